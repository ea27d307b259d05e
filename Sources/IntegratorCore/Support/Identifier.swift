// Identifiers for stored rows: time-ordered UUIDs (version 7), so that ordering by id is ordering by creation.
import Foundation

public enum Identifier {
    /// A new UUIDv7 string in lowercase: 48 bits of Unix milliseconds, then random bits.
    /// Keyset pagination relies on ids sorting in creation order within one process and across processes to the millisecond.
    public static func make(now: Date = Date()) -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in 6..<16 { bytes[index] = generator.next() }
        let milliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        for index in 0..<6 {
            bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - UInt64(index))))
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x70
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4), hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }

    /// Whether a path parameter looks like one of our ids; anything else is a 404 without a query.
    public static func isWellFormed(_ text: some StringProtocol) -> Bool {
        text.count == 36 && UUID(uuidString: String(text)) != nil
    }
}
