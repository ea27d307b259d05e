// The one ISO 8601 reader: offsets, fractional seconds, and what it refuses.
import Foundation
import IntegratorCore
import Testing

@Suite("ISO 8601 instants")
struct ISO8601Tests {
    @Test("reads instants with Z or an offset, with and without fractional seconds")
    func reads() throws {
        let base = try #require(Date(iso8601: "2026-11-23T12:00:00Z"))
        #expect(base.timeIntervalSince1970 == 1_795_435_200)
        #expect(Date(iso8601: "2026-11-23T09:00:00-03:00") == base)
        let fractional = try #require(Date(iso8601: "2026-11-23T12:00:00.250Z"))
        #expect(abs(fractional.timeIntervalSince(base) - 0.25) < 0.0005)
        #expect(Date(iso8601: "2026-11-23T09:00:00.250-03:00") == fractional)
    }

    @Test("refuses dates without a time or an offset, and other text")
    func refuses() {
        for text in ["2026-11-23", "2026-11-23T12:00:00", "yesterday", "", "2026-13-01T00:00:00Z"] {
            #expect(Date(iso8601: text) == nil, "\(text)")
        }
    }
}
