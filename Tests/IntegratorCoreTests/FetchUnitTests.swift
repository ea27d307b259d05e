// The fetch pipeline's pure parts: row ids, secret redaction, content hashes, summaries.
import Foundation
import Logging
import Synchronization
import Testing

@testable import IntegratorCore

@Suite("Fetch pipeline parts")
struct FetchUnitTests {
    @Test("ids are well-formed UUIDv7s in creation order, even under a clock that stands still")
    func rowIdentifiers() {
        let now = Date(timeIntervalSince1970: 1_790_000_000.123)
        let ids = (0..<10_000).map { _ in Identifier.make(now: now) }
        #expect(ids.allSatisfy { Identifier.isWellFormed($0) })
        #expect(ids.allSatisfy { $0[$0.index($0.startIndex, offsetBy: 14)] == "7" })
        #expect(ids == ids.sorted())
        #expect(Set(ids).count == ids.count)
        // Ids keep the millisecond they were made in (or a later one), never an earlier one.
        let bound = Identifier.lowerBound(for: now)
        #expect(ids.allSatisfy { $0 >= bound })
        #expect(bound > Identifier.lowerBound(for: now.addingTimeInterval(-0.001)))
        #expect(Identifier.lowerBound(for: Date(timeIntervalSince1970: 0)) == "00000000-0000-0000-0000-000000000000")
        let later = Identifier.make(now: now.addingTimeInterval(60))
        #expect(later > ids.last! && later >= Identifier.lowerBound(for: now.addingTimeInterval(60)))
    }

    @Test("the redactor masks secret values in text and in nested metadata, longest first, and leaves short ones")
    func redaction() {
        let redactor = SecretRedactor([Secret("abc"), Secret("sk_live_123"), Secret("sk_live_123456")])
        #expect(redactor.redact("key sk_live_123456 and sk_live_123, not abc") == "key ******** and ********, not abc")
        let metadata: Logger.MetadataValue = ["headers": ["authorization": "Bearer sk_live_123"], "ids": [.stringConvertible(42)]]
        #expect(redactor.redact(metadata) == ["headers": ["authorization": "Bearer ********"], "ids": ["42"]])
        #expect(SecretRedactor(nil).isEmpty)
    }

    @Test("a redacting logger masks what a plugin logs through it, including metadata it sets later")
    func redactingLogger() {
        let lines = Lines()
        let sink = LineSink(lines: lines)
        let upstream = Logger(label: "test") { _ in sink }
        var logger = SecretRedactor([Secret("tok-12345")]).wrap(upstream)
        logger[metadataKey: "token"] = "tok-12345"
        logger.info("sending tok-12345", metadata: ["url": "https://x.example/?key=tok-12345"])
        let logged = lines.value.withLock { $0 }
        #expect(logged.count == 1)
        #expect(logged.first?.contains("sending ********") == true)
        #expect(logged.first?.contains("key=********") == true)
        #expect(logged.first?.contains(#""token": ********"#) == true)
        #expect(logged.allSatisfy { !$0.contains("tok-12345") })
    }

    @Test("content hashes are SHA-256 of the canonical JSON, so key order and spacing do not matter")
    func contentHash() throws {
        #expect(FetchSession.hash("{}") == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        let one = try JSONValue.parse(#"{"b": 1, "a": [true, null, "x"]}"#).canonicalText
        let two = try JSONValue.parse(#"{"a":[true,null,"x"],"b":1.0}"#).canonicalText
        #expect(one == #"{"a":[true,null,"x"],"b":1}"#)
        #expect(one == two)
        #expect(FetchSession.hash(one) == FetchSession.hash(two))
    }

    @Test("canonical JSON escapes what JSON requires, keeps the rest, and reads back as the same value")
    func canonicalText() throws {
        let value: JSONValue = [
            "text": "quote \" backslash \\ newline \n tab \t bell \u{07} slash / ação 🎫",
            "numbers": [0, -12, 1.5, 0.1, 1e-7, 123456789012, 2.5e20],
            "nested": ["b": ["z": nil, "a": false], "a": []],
            "Zeta": "capital letters sort first",
        ]
        let text = value.canonicalText
        #expect(try JSONValue.parse(text) == value)
        #expect(text.hasPrefix(#"{"Zeta":"#))
        #expect(text.contains(#""quote \" backslash \\ newline \n tab \t bell \u0007 slash / ação 🎫""#))
        #expect(text.contains(#""nested":{"a":[],"b":{"a":false,"z":null}}"#))
        #expect(text.contains(#"[0,-12,1.5,0.1,1e-07,123456789012,2.5e+20]"#))
        #expect(JSONValue.number(.infinity).canonicalText == "null")
        // The same text as the engine's general encoder for everyday values.
        let everyday: JSONValue = ["id": 42, "name": "Show \"Live\"", "tags": ["a", "b"], "price": 19.9, "open": true]
        #expect(everyday.canonicalText == everyday.encodedString())
    }

    @Test("records with an empty or oversized stream or external id are refused with a message for the plugin author")
    func recordChecks() {
        #expect(FetchSession.problem(with: RawRecord(stream: "events", externalID: "1", data: [:])) == nil)
        #expect(FetchSession.problem(with: RawRecord(stream: "", externalID: "1", data: [:]))?.contains("stream name") == true)
        #expect(FetchSession.problem(with: RawRecord(stream: "events", externalID: "", data: [:]))?.contains("external id") == true)
        let long = String(repeating: "x", count: 501)
        #expect(FetchSession.problem(with: RawRecord(stream: "events", externalID: long, data: [:])) != nil)
    }

    @Test("a summary adds up its streams and renders JSON and a line")
    func summary() {
        var summary = FetchSummary(integrationID: "i", integrationName: "n", provider: "demo")
        summary.pages = 3
        summary.received = 7
        summary.streams = ["a": RecordCounts(new: 2, updated: 1, unchanged: 0), "b": RecordCounts(new: 1, updated: 0, unchanged: 3)]
        summary.elapsed = .milliseconds(1500)
        #expect(summary.records == RecordCounts(new: 3, updated: 1, unchanged: 3))
        #expect(summary.json["new"] == 3 && summary.json["unchanged"] == 3 && summary.json["elapsed_ms"] == 1500)
        #expect(summary.json["streams"]?["b"] == ["new": 1, "updated": 0, "unchanged": 3])
        #expect(summary.line == "3 pages, 7 records: 3 new, 1 updated, 3 unchanged in 1.5 s")
    }
}

private final class Lines: Sendable {
    let value = Mutex<[String]>([])
}

/// A log handler that keeps each line's message and metadata as text.
private struct LineSink: LogHandler {
    let lines: Lines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        lines.value.withLock { $0.append("\(event.message) \(merged)") }
    }
}
