// The plugin registry refuses inconsistent plugin sets with every problem named.
import IntegratorCore
import Testing

@Suite("Plugin registry")
struct RegistryTests {
    struct TokenType: CredentialsType {
        var id = "token"
        var name = "Token"
        var publicFields: FieldSet = []
        var secretFields: FieldSet = [.secret("token", title: "Token")]
    }

    struct Source: ProviderBackend {
        var id = "source"
        var name = "Source"
        var category = "testing"
        var allowedCredentialTypes = ["token"]
        var configFields: FieldSet = []
        func fetch(_ context: FetchContext) async throws {}
    }

    struct Echo: TaskHandler {
        var name = "echo"
        func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue { arguments }
    }

    @Test("a consistent set registers and looks things up")
    func lookups() throws {
        let registry = try PluginRegistry([
            Plugin(id: "a", name: "A", credentialsTypes: [TokenType()], providers: [Source()], taskHandlers: [Echo()])
        ])
        #expect(registry.credentialsType("token")?.name == "Token")
        #expect(registry.provider("source")?.requiresCredentials == true)
        #expect(registry.taskNames == ["echo"])
        #expect(registry.provider("missing") == nil)
    }

    @Test("duplicates and dangling references are each reported")
    func problems() {
        let plugins = [
            Plugin(id: "a", name: "A", credentialsTypes: [TokenType()], providers: [Source()], taskHandlers: [Echo()]),
            Plugin(id: "a", name: "A again", credentialsTypes: [TokenType()], providers: [Source(allowedCredentialTypes: ["nope"])], taskHandlers: [Echo()]),
            Plugin(id: "b", name: "B", credentialsTypes: [TokenType(id: "mixed", publicFields: [.string("token", title: "T")])]),
        ]
        do {
            _ = try PluginRegistry(plugins)
            Issue.record("accepted duplicates")
        } catch {
            #expect(error.problems.contains("plugin id 'a' is registered twice"))
            #expect(error.problems.contains("credentials type 'token' is declared by both 'a' and 'a'"))
            #expect(error.problems.contains("provider 'source' is declared by both 'a' and 'a'"))
            #expect(error.problems.contains("task 'echo' is handled by both 'a' and 'a'"))
            #expect(error.problems.contains("provider 'source' allows credentials type 'nope', which no plugin declares"))
            #expect(error.problems.contains("credentials type 'mixed': field 'token' is both public and secret"))
        }
    }
}
