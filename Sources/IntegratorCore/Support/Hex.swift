// Bytes as lowercase hexadecimal text: digests stored as keys (token hashes, record hashes) and the webhooks' seed
// signature.
import Foundation

public enum Hex {
    /// Two lowercase digits per byte, written in place: Foundation's format strings cost a string per byte, which
    /// counts where every record or delivery is hashed.
    public static func lowercase(_ bytes: some ContiguousBytes) -> String {
        bytes.withUnsafeBytes { bytes in
            let digits: StaticString = "0123456789abcdef"
            return String(unsafeUninitializedCapacity: bytes.count * 2) { text in
                digits.withUTF8Buffer { digits in
                    for (index, byte) in bytes.enumerated() {
                        text[2 * index] = digits[Int(byte >> 4)]
                        text[2 * index + 1] = digits[Int(byte & 0x0f)]
                    }
                }
                return bytes.count * 2
            }
        }
    }
}
