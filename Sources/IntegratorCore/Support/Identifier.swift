// Identifiers for stored rows: time-ordered UUIDs (version 7), so that ordering by id is ordering by creation.
import Foundation
import Synchronization

public enum Identifier {
    /// A new UUIDv7 string in lowercase: 48 bits of Unix milliseconds, then random bits.
    /// Keyset pagination relies on ids sorting in creation order within one process and across processes to the millisecond.
    public static func make(now: Date = Date()) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in 8..<16 { bytes[index] = generator.next() }
        let (milliseconds, counter) = nextTimestamp(UInt64(max(0, now.timeIntervalSince1970 * 1000)))
        for index in 0..<6 {
            bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - UInt64(index))))
        }
        bytes[6] = 0x70 | UInt8(counter >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: counter)
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }

    /// Ids made in the same millisecond (or under a clock that stands still in tests) stay ordered:
    /// the 12 bits after the timestamp count up, and the timestamp moves on when they run out (RFC 9562, method 1).
    private static let last = Mutex<(milliseconds: UInt64, counter: UInt16)>((0, 0))

    private static func nextTimestamp(_ milliseconds: UInt64) -> (UInt64, UInt16) {
        last.withLock { last in
            if milliseconds > last.milliseconds {
                last = (milliseconds, UInt16.random(in: 0...0x3FF))
            } else if last.counter < 0xFFF {
                last.counter += 1
            } else {
                last = (last.milliseconds + 1, 0)
            }
            return (last.milliseconds, last.counter)
        }
    }

    /// Whether a path parameter looks like one of our ids; anything else is a 404 without a query.
    public static func isWellFormed(_ text: some StringProtocol) -> Bool {
        text.count == 36 && UUID(uuidString: String(text)) != nil
    }
}
