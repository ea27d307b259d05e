// The two signatures every delivery carries, and their verification: the seed's `X-Webhook-Signature: sha256=<hex>` and
// Standard Webhooks' `webhook-signature: v1,<base64>`.
import Crypto
import Foundation
import IntegratorCore
import Synchronization

enum WebhookSignature {
    /// How far a Standard Webhooks timestamp may be from now when verifying, against replays.
    static let tolerance: TimeInterval = 300

    /// The seed's scheme: `sha256=` and the hex HMAC-SHA256 of the raw body, keyed with the secret's UTF-8 bytes.
    static func seed(body: Data, secret: String) -> String {
        seed(body: body, key: SigningKey(secret))
    }

    static func seed(body: Data, key: SigningKey) -> String {
        "sha256=" + Hex.lowercase(key.seed.code(of: body))
    }

    /// Standard Webhooks: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    static func standard(id: String, timestamp: Int, body: Data, secret: String) -> String {
        standard(id: id, timestamp: timestamp, body: body, key: SigningKey(secret))
    }

    static func standard(id: String, timestamp: Int, body: Data, key: SigningKey) -> String {
        // Fed in two parts rather than joined first: the body is not copied.
        let code = key.standard.code(of: Data("\(id).\(timestamp).".utf8), body)
        return "v1," + code.withUnsafeBytes { Data($0) }.base64EncodedString()
    }

    /// A `whsec_` secret is base64 after the prefix (the form Standard Webhooks libraries generate); any other secret is
    /// used as its UTF-8 bytes, so the seed's plain secrets sign both schemes.
    static func standardKey(_ secret: String) -> SymmetricKey {
        SymmetricKey(data: standardKeyBytes(secret))
    }

    private static func standardKeyBytes(_ secret: String) -> Data {
        if secret.hasPrefix("whsec_"), let decoded = Data(base64Encoded: String(secret.dropFirst(6))), !decoded.isEmpty {
            return decoded
        }
        return Data(secret.utf8)
    }

    /// One secret keyed for both schemes, made once per secret (see ``Keyring``).
    struct SigningKey: Sendable {
        let seed: KeyedHash
        let standard: KeyedHash

        init(_ secret: String) {
            seed = KeyedHash(key: Data(secret.utf8))
            standard = KeyedHash(key: standardKeyBytes(secret))
        }
    }

    /// HMAC-SHA256 (RFC 2104) with its key's two padded blocks hashed once: each message then starts from copies of
    /// the two states. Written on `SHA256` rather than `HMAC<SHA256>`, whose generic `update(data:)` and digest
    /// conversions cost more than the hashing on this hot path (a batch signs hundreds of deliveries to one tenant).
    /// Checked against `HMAC<SHA256>` for keys shorter than, as long as and longer than a block.
    struct KeyedHash: Sendable {
        private let inner: SHA256
        private let outer: SHA256

        init(key: Data) {
            let blockSize = SHA256.blockByteCount
            var block = key.count > blockSize ? Array(SHA256.hash(data: key)) : Array(key)
            block += repeatElement(0, count: blockSize - block.count)
            var inner = SHA256()
            inner.update(data: block.map { $0 ^ 0x36 })
            var outer = SHA256()
            outer.update(data: block.map { $0 ^ 0x5c })
            self.inner = inner
            self.outer = outer
        }

        /// The authentication code of the parts, in order, as if joined.
        func code(of parts: Data...) -> SHA256.Digest {
            var hash = inner
            for part in parts { part.withUnsafeBytes { hash.update(bufferPointer: $0) } }
            let innerDigest = hash.finalize()
            var outerHash = outer
            innerDigest.withUnsafeBytes { outerHash.update(bufferPointer: $0) }
            return outerHash.finalize()
        }
    }

    /// Keys made once per secret and reused by every delivery in the process that signs with it.
    final class Keyring: Sendable {
        private let keys = Mutex<[String: SigningKey]>([:])
        /// Past this many secrets (tenants rotating keys, or very many tenants) the ring starts over rather than grow.
        static let capacity = 1_024

        func key(for secret: String) -> SigningKey {
            if let known = keys.withLock({ $0[secret] }) { return known }
            let made = SigningKey(secret)
            keys.withLock { keys in
                if keys.count >= Self.capacity { keys.removeAll(keepingCapacity: true) }
                keys[secret] = made
            }
            return made
        }
    }

    private static func signedContent(id: String, timestamp: Int, body: Data) -> Data {
        var content = Data("\(id).\(timestamp).".utf8)
        content.append(body)
        return content
    }

    /// Whether one of the space-separated `sha256=<hex>` entries of `header` is the body's signature under one of `secrets`.
    static func verifySeed(header: String, body: Data, secrets: [String]) -> Bool {
        let codes = header.split(separator: " ").compactMap { entry -> Data? in
            guard entry.hasPrefix("sha256=") else { return nil }
            return Data(hex: entry.dropFirst(7))
        }
        return codes.contains { code in
            secrets.contains { HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: body, using: SymmetricKey(data: Data($0.utf8))) }
        }
    }

    /// Whether one of the space-separated `v1,<base64>` entries of `header` signs `id`, `timestamp` and the body under
    /// one of `secrets`, with the timestamp within ``tolerance`` of `now`.
    static func verifyStandard(id: String, timestamp: String, header: String, body: Data, secrets: [String], now: Date) -> Bool {
        guard let seconds = Int(timestamp), abs(now.timeIntervalSince1970 - Double(seconds)) <= tolerance else { return false }
        let content = signedContent(id: id, timestamp: seconds, body: body)
        let codes = header.split(separator: " ").compactMap { entry -> Data? in
            guard entry.hasPrefix("v1,") else { return nil }
            return Data(base64Encoded: String(entry.dropFirst(3)))
        }
        return codes.contains { code in
            secrets.contains { HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: content, using: standardKey($0)) }
        }
    }
}

extension Data {
    /// Bytes from lowercase or uppercase hex; `nil` for an odd length or a non-hex character.
    init?(hex: some StringProtocol) {
        guard hex.utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(hex.utf8.count / 2)
        var high: UInt8?
        for character in hex.utf8 {
            let nibble: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = character - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = character - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): nibble = character - UInt8(ascii: "A") + 10
            default: return nil
            }
            if let first = high {
                bytes.append(first << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        self.init(bytes)
    }
}
