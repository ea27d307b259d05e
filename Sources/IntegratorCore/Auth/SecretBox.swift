// Encryption at rest for secret credential fields: AES-GCM under the current key, tagged with the key's id.
import Crypto
import Foundation

/// Seals and opens secret values. The envelope is `v1.<key id>.<base64 nonce+ciphertext+tag>`;
/// the row's id is bound in as associated data, so an envelope copied onto another row does not open.
public struct SecretBox: Sendable {
    public let keys: SecretKeyRing

    public init(keys: SecretKeyRing) { self.keys = keys }

    public func seal(_ values: [String: JSONValue], boundTo rowID: String) throws -> String {
        let plaintext = Data(JSONValue.object(values).encodedString().utf8)
        let box = try AES.GCM.seal(plaintext, using: keys.current.key, authenticating: Data(rowID.utf8))
        guard let combined = box.combined else { throw SecretBoxError(message: "cannot seal secret") }
        return "v1.\(keys.current.id).\(combined.base64EncodedString())"
    }

    public func open(_ envelope: String, boundTo rowID: String) throws -> [String: JSONValue] {
        let parts = envelope.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "v1", let data = Data(base64Encoded: String(parts[2])) else {
            throw SecretBoxError(message: "stored secret is not a known envelope")
        }
        guard let key = keys.key(id: String(parts[1])) else {
            throw SecretBoxError(
                message: "stored secret was encrypted with key \(parts[1]), which INTEGRATOR_SECRET_KEY no longer lists")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            let plaintext = try AES.GCM.open(box, using: key.key, authenticating: Data(rowID.utf8))
            return try JSONValue.parse(plaintext).objectValue ?? [:]
        } catch {
            throw SecretBoxError(message: "stored secret does not decrypt with key \(key.id)")
        }
    }

    /// Whether the envelope was sealed with an older key and should be re-sealed.
    public func needsRotation(_ envelope: String) -> Bool {
        !envelope.hasPrefix("v1.\(keys.current.id).")
    }
}

/// A secret could not be sealed or opened. The message names keys by id only.
public struct SecretBoxError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
