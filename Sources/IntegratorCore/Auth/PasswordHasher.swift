// Password hashing with bcrypt, off the cooperative pool because each hash takes real CPU time.
import HummingbirdBcrypt
import NIOPosix

/// Hashes and checks passwords.
public struct PasswordHasher: Sendable {
    /// bcrypt cost; 12 is about a quarter of a second here.
    public var cost: UInt8

    public init(cost: UInt8 = 12) { self.cost = cost }

    public func hash(_ password: Secret) async throws -> String {
        let cost = self.cost
        return try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password.reveal(), cost: cost) }
    }

    public func verify(_ password: Secret, hash: String) async throws -> Bool {
        try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password.reveal(), hash: hash) }
    }

    /// Why a new password is not acceptable, or `nil`.
    public static func problem(with password: String) -> String? {
        if password.count < 12 { return "must be at least 12 characters" }
        if password.count > 72 { return "must be at most 72 characters (bcrypt ignores the rest)" }
        return nil
    }
}
