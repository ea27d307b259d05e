// The scheduled messages plugin's pure parts: reading upsert bodies, ids in paths, filters and the prefix's range,
// and how nextRun is written.
import Foundation
import IntegratorCore
@testable import Plugins
import Testing

@Suite("Scheduled messages: input, filters, formats")
struct ScheduledMessagesUnitTests {
    @Test("an upsert body is read with its scheduleTo kept as sent and a new version each time")
    func readsBody() throws {
        let body: JSONValue = [
            "id": "a", "scheduleTo": "2025-12-25T07:30:05.5-03:00", "payload": ["k": [1, 2]], "webhookUrl": "https://example.com/h",
        ]
        let first = try ScheduledMessageInput.read(body)
        let second = try ScheduledMessageInput.read(body)
        #expect(first.scheduleTo == "2025-12-25T07:30:05.5-03:00")
        #expect(first.dueAt == Date(timeIntervalSince1970: 1_766_658_605.5))
        #expect(first.payload == ["k": [1, 2]])
        #expect(first.version != second.version)
    }

    @Test("every bad field is named at once")
    func namesEveryField() {
        do {
            _ = try ScheduledMessageInput.read(["id": "x\u{7}", "scheduleTo": "tomorrow", "webhookUrl": "mailto:a@b.c"])
            Issue.record("expected a validation failure")
        } catch {
            #expect(Set(error.issues.map(\.field)) == ["id", "scheduleTo", "payload", "webhookUrl"])
        }
    }

    @Test("path ids are percent-decoded and checked")
    func pathIDs() throws {
        #expect(try ScheduledMessageInput.pathID("%2B5511999999999_2h") == "+5511999999999_2h")
        #expect(try ScheduledMessageInput.pathID("a+b") == "a+b")
        #expect(try ScheduledMessageInput.pathID("caf%C3%A9") == "café")
        #expect(throws: ValidationFailure.self) { try ScheduledMessageInput.pathID("%ZZ") }
        #expect(throws: ValidationFailure.self) { try ScheduledMessageInput.pathID("a%0Ab") }
    }

    @Test("a filter needs prefix or contains; empty values count as absent")
    func filters() throws {
        #expect(throws: ValidationFailure.self) { try MessageFilter(prefix: nil, contains: nil) }
        #expect(throws: ValidationFailure.self) { try MessageFilter(prefix: "", contains: "") }
        let both = try MessageFilter(prefix: "123_", contains: "_24h")
        #expect(both.matches("123_55_24h"))
        #expect(!both.matches("124_55_24h"))
        #expect(!both.matches("123_55_2h"))
    }

    @Test("a prefix's upper bound is the next string in code point order")
    func prefixUpperBound() {
        #expect(MessageFilter.upperBound(ofPrefix: "abc") == "abd")
        #expect(MessageFilter.upperBound(ofPrefix: "+55") == "+56")
        #expect(MessageFilter.upperBound(ofPrefix: "a\u{D7FF}") == "a\u{E000}")
        #expect(MessageFilter.upperBound(ofPrefix: "a\u{10FFFF}") == "b")
        #expect(MessageFilter.upperBound(ofPrefix: "\u{10FFFF}") == nil)
        // Every string with the prefix sorts between the prefix and its bound, by UTF-8 bytes.
        for prefix in ["123_5511", "é", "z\u{FFFF}"] {
            let upper = Array(MessageFilter.upperBound(ofPrefix: prefix)!.utf8)
            for suffix in ["", "\u{0}", "zzz", "\u{10FFFF}\u{10FFFF}", "é"] {
                let id = Array((prefix + suffix).utf8)
                #expect(id.lexicographicallyPrecedes(upper), "\(prefix + suffix)")
                #expect(!id.lexicographicallyPrecedes(Array(prefix.utf8)))
            }
        }
    }

    @Test("nextRun is ISO 8601 with a numeric offset, milliseconds only when there are any")
    func nextRunText() {
        #expect(ScheduledMessage.nextRunText(Date(iso8601: "2025-12-25T10:30:05Z")!) == "2025-12-25T10:30:05+00:00")
        #expect(ScheduledMessage.nextRunText(Date(iso8601: "2025-12-25T07:30:05.250-03:00")!) == "2025-12-25T10:30:05.250+00:00")
    }
}
