// Header names compared as HTTP does: ASCII letters without regard to case. Foundation's case-insensitive comparison
// bridges to NSString and handles all of Unicode, which cost a measurable share of every webhook delivery (each
// request's headers are looked up a few times).

enum HeaderName {
    /// Whether `first` and `second` are the same header name.
    static func matches(_ first: String, _ second: String) -> Bool {
        var left = first.utf8.makeIterator()
        var right = second.utf8.makeIterator()
        while true {
            switch (left.next(), right.next()) {
            case (nil, nil): return true
            case let (a?, b?):
                if a != b, lowercased(a) != lowercased(b) { return false }
            default: return false
            }
        }
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte + 32 : byte
    }
}
