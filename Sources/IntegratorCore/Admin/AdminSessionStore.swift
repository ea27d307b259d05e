// Sessions of the admin web UI: a random token in an HttpOnly cookie, stored only as its SHA-256, with the user it
// belongs to, a CSRF token for the session's forms, and an idle and an absolute expiry.
import Crypto
import Foundation
import SQLKit

extension Migration {
    /// Logged-in browser sessions of the admin web UI.
    static let adminSessions = Migration(version: 11, name: "admin_sessions") { facts in
        [
            """
            CREATE TABLE admin_sessions (
                token_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                csrf_token TEXT NOT NULL,
                created_at \(facts.timestamp) NOT NULL,
                last_seen \(facts.timestamp) NOT NULL,
                expires_at \(facts.timestamp) NOT NULL
            )
            """,
            "CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at)",
        ]
    }
}

/// A logged-in session, with its user as stored now (so a changed role or a deleted user takes effect at once).
struct AdminSession: Sendable {
    var user: User
    var csrfToken: String
    var lastSeen: Date
    var expiresAt: Date
}

/// Reads and writes `admin_sessions`.
struct AdminSessionStore: Sendable {
    let database: Database
    let clock: any TimeSource
    /// A session ends after this long without a request.
    var idleLifetime: TimeInterval = 2 * 3600
    /// And at the latest this long after logging in.
    var absoluteLifetime: TimeInterval = 12 * 3600

    /// Starts a session for `user`; returns the cookie token (never stored) and the session.
    func create(for user: User) async throws -> (token: String, session: AdminSession) {
        let now = clock.now()
        let token = Self.randomToken()
        let session = AdminSession(
            user: user, csrfToken: Self.randomToken(), lastSeen: now, expiresAt: now.addingTimeInterval(idleLifetime))
        let absoluteEnd = now.addingTimeInterval(absoluteLifetime)
        try await database.withSQL { sql in
            // Expired sessions are removed as new ones start, so the table holds only live ones and a few stragglers.
            try await sql.raw("DELETE FROM admin_sessions WHERE expires_at < \(bind: now)").run()
            try await sql.raw(
                """
                INSERT INTO admin_sessions (token_hash, user_id, csrf_token, created_at, last_seen, expires_at)
                VALUES (\(bind: Self.hash(token)), \(bind: user.id), \(bind: session.csrfToken), \(bind: now), \(bind: now),
                        \(bind: min(session.expiresAt, absoluteEnd)))
                """
            ).run()
        }
        return (token, session)
    }

    /// The live session of a cookie token, extended by the idle lifetime (written at most once a minute); `nil` when
    /// the token is unknown or expired.
    func find(token: String) async throws -> AdminSession? {
        let now = clock.now()
        let hash = Self.hash(token)
        let found: (AdminSession, Date)? = try await database.withSQL { sql in
            guard
                let row = try await sql.raw(
                    """
                    SELECT s.csrf_token, s.created_at, s.last_seen, s.expires_at, u.id, u.username, u.role, u.created_at AS user_created,
                           u.updated_at AS user_updated
                    FROM admin_sessions s JOIN users u ON u.id = s.user_id
                    WHERE s.token_hash = \(bind: hash) AND s.expires_at > \(bind: now)
                    """
                ).first(),
                let role = Role(rawValue: try row.decode(column: "role", as: String.self))
            else { return nil }
            let user = User(
                id: try row.decode(column: "id", as: String.self), username: try row.decode(column: "username", as: String.self),
                role: role, createdAt: try row.decode(column: "user_created", as: Date.self),
                updatedAt: try row.decode(column: "user_updated", as: Date.self))
            let session = AdminSession(
                user: user, csrfToken: try row.decode(column: "csrf_token", as: String.self),
                lastSeen: try row.decode(column: "last_seen", as: Date.self),
                expiresAt: try row.decode(column: "expires_at", as: Date.self))
            return (session, try row.decode(column: "created_at", as: Date.self))
        }
        guard let found else { return nil }
        var session = found.0
        let createdAt = found.1
        if now.timeIntervalSince(session.lastSeen) >= 60 {
            session.lastSeen = now
            session.expiresAt = min(now.addingTimeInterval(idleLifetime), createdAt.addingTimeInterval(absoluteLifetime))
            let extended = session
            try await database.withSQL { sql in
                try await sql.raw(
                    """
                    UPDATE admin_sessions SET last_seen = \(bind: extended.lastSeen), expires_at = \(bind: extended.expiresAt)
                    WHERE token_hash = \(bind: hash)
                    """
                ).run()
            }
        }
        return session
    }

    /// Ends the session of a cookie token (logging out).
    func delete(token: String) async throws {
        try await database.withSQL { sql in
            try await sql.raw("DELETE FROM admin_sessions WHERE token_hash = \(bind: Self.hash(token))").run()
        }
    }

    /// 256 random bits, base64url without padding.
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func hash(_ token: String) -> String {
        Hex.lowercase(SHA256.hash(data: Data(token.utf8)))
    }
}
