// The built-in plugins: they register together, the generic types validate, the demo provider yields stable records.
import IntegratorCore
import Logging
import Plugins
import Synchronization
import Testing

@Suite("Built-in plugins")
struct BuiltinPluginsTests {
    @Test("the built-in set registers without problems")
    func registers() throws {
        let registry = try BuiltinPlugins.registry()
        #expect(registry.credentialsTypes.map(\.id) == ["blip", "blip-database", "http-basic", "http-bearer", "http-header", "http-query", "sympla"])
        #expect(registry.providers.map(\.id) == ["blip-notifications", "demo", "sympla"])
    }

    @Test("generic types declare their secrets as secret fields")
    func genericSecrets() throws {
        let registry = try BuiltinPlugins.registry()
        #expect(registry.credentialsType("http-bearer")?.secretFields.secretNames == ["token"])
        #expect(registry.credentialsType("http-basic")?.secretFields.secretNames == ["password"])
        #expect(registry.credentialsType("http-header")?.publicFields["header_name"]?.isRequired == true)
        #expect(registry.credentialsType("http-query")?.secretFields.secretNames == ["value"])
    }

    @Test("cross-field checks of the generic types", arguments: [
        ("http-basic", ["username": "a:b"] as [String: JSONValue], ["public.username"]),
        ("http-header", ["header_name": "Authorization"], ["public.header_name"]),
        ("http-header", ["header_name": "X-Api-Key"], []),
        ("http-query", ["param_name": "key&x"], ["public.param_name"]),
        ("http-query", ["param_name": "api_key"], []),
    ])
    func crossField(type: String, publicValues: [String: JSONValue], fields: [String]) throws {
        let registry = try BuiltinPlugins.registry()
        let credentials = CredentialValues(typeID: type, publicValues: publicValues, secretValues: [:])
        #expect(registry.credentialsType(type)?.validate(credentials).map(\.field) == fields)
    }

    @Test("the demo provider yields its configured records with stable ids and checkpoints the run")
    func demoFetch() async throws {
        let provider = DemoProvider()
        let config = try provider.configFields.normalize(["records": 50, "change_fraction": 0.5], at: "config")
        let state = MemoryState()
        let first = MemorySink()
        try await provider.fetch(context(config, state: state, sink: first))
        let firstRecords = first.records.withLock { $0 }
        #expect(firstRecords.count == 50)
        #expect(firstRecords.map(\.externalID) == (1...50).map { "demo-\($0)" })
        #expect(Set(firstRecords.map(\.stream)) == ["items"])
        #expect(firstRecords.allSatisfy { $0.data["revision"] == 0 })

        let second = MemorySink()
        try await provider.fetch(context(config, state: state, sink: second))
        let secondRecords = second.records.withLock { $0 }
        #expect(secondRecords.map(\.externalID) == firstRecords.map(\.externalID))
        let changed = zip(firstRecords, secondRecords).filter { $0.data != $1.data }.count
        #expect(changed > 5 && changed < 45)
        #expect(try await state.cursor(for: "items") == ["run": 2])
    }

    @Test("demo config is bounded")
    func demoBounds() {
        let issues = DemoProvider().configFields.issues(in: ["records": 1_000_001], at: "config")
        #expect(issues.map(\.field) == ["config.records"])
    }

    func context(_ config: [String: JSONValue], state: MemoryState, sink: MemorySink) -> FetchContext {
        FetchContext(
            integrationID: "i", integrationName: "demo", config: config, credentials: nil, state: state, records: sink,
            logger: Logger(label: "test"))
    }
}

final class MemorySink: RecordSink {
    let records = Mutex<[RawRecord]>([])
    func emit(_ record: RawRecord) async throws { records.withLock { $0.append(record) } }
}

final class MemoryState: FetchState {
    let cursors = Mutex<[String: JSONValue]>([:])
    func cursor(for stream: String) async throws -> JSONValue? { cursors.withLock { $0[stream] } }
    func checkpoint(_ cursor: JSONValue, for stream: String) async throws { cursors.withLock { $0[stream] = cursor } }
}
