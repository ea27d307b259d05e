// Access and refresh tokens (JWT, HMAC-SHA256) and personal API tokens (random, stored as SHA-256).
import Crypto
import Foundation
import JWTKit

/// Issues and checks bearer tokens.
public struct TokenService: Sendable {
    /// Lifetime of access tokens, in seconds.
    public let accessLifetime: TimeInterval
    /// Lifetime of refresh tokens, in seconds.
    public let refreshLifetime: TimeInterval
    private let keys: JWTKeyCollection
    private let clock: any TimeSource

    /// Personal API tokens start with this, so they are recognisable in a leak scan and told apart from JWTs.
    public static let personalTokenPrefix = "itk_"

    public init(
        keyRing: SecretKeyRing, clock: any TimeSource = SystemTimeSource(), accessLifetime: TimeInterval = 900,
        refreshLifetime: TimeInterval = 7 * 86400
    ) async {
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(key: keyRing.derivedKey(purpose: "jwt")), digestAlgorithm: .sha256)
        self.keys = keys
        self.clock = clock
        self.accessLifetime = accessLifetime
        self.refreshLifetime = refreshLifetime
    }

    /// A pair of tokens for `user`.
    public func issue(for user: User) async throws -> IssuedTokens {
        let now = clock.now()
        let access = Claims(
            sub: .init(value: user.id), exp: .init(value: now.addingTimeInterval(accessLifetime)),
            iat: .init(value: now), typ: Claims.access, role: user.role.rawValue, name: user.username)
        var refresh = access
        refresh.typ = Claims.refresh
        refresh.exp = .init(value: now.addingTimeInterval(refreshLifetime))
        return IssuedTokens(
            accessToken: try await keys.sign(access), refreshToken: try await keys.sign(refresh), expiresIn: Int(accessLifetime))
    }

    /// The user id in a valid, unexpired token of the given kind; `nil` for anything else.
    public func verify(_ token: String, refresh: Bool = false) async -> Claims? {
        guard let claims = try? await keys.verify(token, as: Claims.self) else { return nil }
        guard claims.typ == (refresh ? Claims.refresh : Claims.access), clock.now() < claims.exp.value else { return nil }
        return claims
    }

    /// A new random personal API token; store only its ``hashPersonalToken(_:)``.
    public static func makePersonalToken() -> Secret {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return Secret(personalTokenPrefix + text)
    }

    /// SHA-256 in hex. Tokens have 256 random bits, so a fast hash is enough; lookups are by this value.
    public static func hashPersonalToken(_ token: Secret) -> String {
        Hex.lowercase(SHA256.hash(data: Data(token.reveal().utf8)))
    }

    /// Compares two secrets in time that depends only on their lengths.
    public static func constantTimeEquals(_ lhs: Secret, _ rhs: Secret) -> Bool {
        let left = Array(SHA256.hash(data: Data(lhs.reveal().utf8)))
        let right = Array(SHA256.hash(data: Data(rhs.reveal().utf8)))
        var difference: UInt8 = 0
        for index in 0..<left.count { difference |= left[index] ^ right[index] }
        return difference == 0
    }

    /// The claims inside our JWTs.
    public struct Claims: JWTPayload, Equatable {
        static let access = "access"
        static let refresh = "refresh"

        public var sub: SubjectClaim
        public var exp: ExpirationClaim
        public var iat: IssuedAtClaim
        public var typ: String
        public var role: String
        public var name: String

        /// Expiry is checked against the injected clock in ``TokenService/verify(_:refresh:)``.
        public func verify(using algorithm: some JWTAlgorithm) async throws {}
    }
}

/// The answer to a login or refresh.
public struct IssuedTokens: Sendable, Codable, Equatable {
    public var accessToken: String
    public var refreshToken: String
    public var expiresIn: Int
}
