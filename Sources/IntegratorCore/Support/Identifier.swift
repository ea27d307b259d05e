// Identifiers for stored rows: time-ordered UUIDs (version 7), so that ordering by id is ordering by creation.
import Foundation
import Synchronization

public enum Identifier {
    /// A new UUIDv7 string in lowercase: 48 bits of Unix milliseconds, a 12-bit counter, then 62 random bits.
    /// Keyset pagination relies on ids sorting in creation order within one process and across processes to the millisecond.
    /// Every task message and every fetched record gets one, so hex is written from a table and the random bits are
    /// drawn at once.
    public static func make(now: Date = Date()) -> String {
        let (milliseconds, counter) = nextTimestamp(UInt64(max(0, now.timeIntervalSince1970 * 1000)))
        var random = SystemRandomNumberGenerator()
        let high = (milliseconds << 16) | 0x7000 | UInt64(counter & 0x0FFF)
        let low = (random.next() & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000
        return String(unsafeUninitializedCapacity: 36) { output in
            var position = 0
            for nibble in 0..<32 {
                if nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20 {
                    output[position] = UInt8(ascii: "-")
                    position += 1
                }
                let word = nibble < 16 ? high : low
                output[position] = hexDigits[Int((word >> UInt64(60 - (nibble % 16) * 4)) & 0xF)]
                position += 1
            }
            return position
        }
    }

    /// The smallest id that ``make(now:)`` can return for `date` or later: ids sort by their millisecond first,
    /// and a millisecond's ids never carry an earlier one (the counter only pushes them later).
    static func lowerBound(for date: Date) -> String {
        let milliseconds = UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded(.down)))
        let hex = String(milliseconds, radix: 16)
        let digits = String(repeating: "0", count: max(0, 12 - hex.count)) + hex
        return "\(digits.prefix(8))-\(digits.suffix(4))-0000-0000-000000000000"
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

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
