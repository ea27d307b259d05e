// The keys behind INTEGRATOR_SECRET_KEY: the first encrypts and signs, the rest still decrypt (key rotation).
import Crypto
import Foundation

/// One or more 32-byte keys. Each has a short id stored beside every ciphertext, so old data stays readable after rotation.
public struct SecretKeyRing: Sendable {
    public struct Key: Sendable {
        /// First 8 hex digits of the key's SHA-256: identifies it without revealing it.
        public let id: String
        public let key: SymmetricKey
    }

    /// Encrypts new secrets and signs tokens.
    public let current: Key
    /// Every key, current first.
    public let all: [Key]

    public init(keys: [SymmetricKey]) {
        let made = keys.map { key in
            let digest = SHA256.hash(data: key.withUnsafeBytes { Data($0) })
            return Key(id: Hex.lowercase(Data(digest.prefix(4))), key: key)
        }
        precondition(!made.isEmpty, "a key ring needs a key")
        self.current = made[0]
        self.all = made
    }

    /// Parses a comma-separated list of base64 keys of 32 bytes each; the first is the current one.
    public init(parsing text: String, variable: String) throws(ConfigurationError) {
        var keys: [SymmetricKey] = []
        for (index, part) in text.split(separator: ",").enumerated() {
            guard let data = Data(base64Encoded: part.trimmingCharacters(in: .whitespaces)), data.count == 32 else {
                throw ConfigurationError(
                    variable: variable,
                    expected: "base64 of 32 bytes (key \(index + 1) is not); generate one with `openssl rand -base64 32`")
            }
            keys.append(SymmetricKey(data: data))
        }
        guard !keys.isEmpty else { throw ConfigurationError(variable: variable, expected: "base64 of 32 bytes") }
        self.init(keys: keys)
    }

    /// A fresh random key, base64-encoded, as `integrator dev` writes it.
    public static func generateEncodedKey() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
    }

    public func key(id: String) -> Key? { all.first { $0.id == id } }

    /// A key for another purpose (token signing), derived so that the encryption key itself never signs anything.
    public func derivedKey(purpose: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: current.key, info: Data("integrator/\(purpose)".utf8), outputByteCount: 32)
    }
}
