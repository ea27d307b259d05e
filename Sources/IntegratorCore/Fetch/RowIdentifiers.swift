// Ids for the rows a fetch writes (records and events), made fast enough for hundreds of thousands a second.
import Foundation
import Synchronization

/// Makes UUIDv7 ids in the layout of ``Identifier/make(now:)`` (48 bits of Unix milliseconds, a 12-bit counter that
/// keeps ids made within one millisecond in order, 62 random bits), so they sort in creation order and pass
/// ``Identifier/isWellFormed(_:)``.
///
/// A fetch makes two ids for every new record; ``Identifier/make(now:)`` formats each byte through
/// `String(format:)` and draws each random byte separately, which took more than half of a fetch's CPU time. This
/// writes hex from a table and draws the random bits at once. Only the fetch pipeline's tables use these ids, so
/// their order is kept by this generator's own counter.
enum RowIdentifiers {
    private static let last = Mutex<(milliseconds: UInt64, counter: UInt16)>((0, 0))
    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func make(now: Date) -> String {
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

    /// The same rule as ``Identifier``: within one millisecond (or under a clock that stands still) the counter
    /// counts up, and the timestamp moves on when it runs out.
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
}
