// Users, logins, refreshes and bearer-token authentication, shared by the API and the CLI.
import Foundation

/// The account use cases.
public struct UsersService: Sendable {
    let store: UserStore
    let hasher: PasswordHasher
    let tokens: TokenService
    let apiToken: Secret?
    let clock: any TimeSource

    public init(store: UserStore, hasher: PasswordHasher, tokens: TokenService, apiToken: Secret?, clock: any TimeSource) {
        self.store = store
        self.hasher = hasher
        self.tokens = tokens
        self.apiToken = apiToken
        self.clock = clock
    }

    /// Creates a user after checking the name, role and password; every problem is reported at once.
    public func create(username: String?, role: String?, password: Secret?) async throws -> User {
        var issues: [FieldIssue] = []
        if let problem = Self.problem(withUsername: username) { issues.append(.init(field: "username", message: problem)) }
        let parsedRole = role.flatMap(Role.init(rawValue:))
        if parsedRole == nil {
            issues.append(.init(field: "role", message: role == nil ? "is required" : "must be one of admin, operator, viewer"))
        }
        if let password {
            if let problem = PasswordHasher.problem(with: password.reveal()) { issues.append(.init(field: "password", message: problem)) }
        } else {
            issues.append(.init(field: "password", message: "is required"))
        }
        guard issues.isEmpty, let username, let parsedRole, let password else { throw ValidationFailure(issues) }
        let hash = try await hasher.hash(password)
        do {
            return try await store.create(username: username, role: parsedRole, passwordHash: hash, now: clock.now())
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "a user named '\(username)' already exists")
        }
    }

    /// Creates the user from an API body `{"username", "role", "password"}`.
    public func create(_ body: JSONValue) async throws -> User {
        var input = try InputObject(body)
        let username = input.raw("username")
        let role = input.raw("role")
        let password = input.raw("password")
        var typeIssues: [FieldIssue] = []
        for (name, value) in [("username", username), ("role", role), ("password", password)] {
            if let value, value != .null, value.stringValue == nil {
                typeIssues.append(.init(field: name, message: "must be a string, got \(value.typeName)"))
            }
        }
        input.add(typeIssues)
        try input.finish()
        return try await create(
            username: username?.stringValue, role: role?.stringValue, password: password?.stringValue.map(Secret.init))
    }

    /// Changes a user's role and/or password from `{"role", "password"}`.
    public func update(id: String, _ body: JSONValue) async throws -> User {
        var input = try InputObject(body)
        let roleText = input.string("role", length: 1...20)
        let password = input.string("password", length: 1...1000)
        var role: Role?
        if let roleText {
            role = Role(rawValue: roleText)
            if role == nil { input.addIssue("role", "must be one of admin, operator, viewer") }
        }
        if let password, let problem = PasswordHasher.problem(with: password) { input.addIssue("password", problem) }
        try input.finish()
        let hash: String? = if let password { try await hasher.hash(Secret(password)) } else { nil }
        guard Identifier.isWellFormed(id), let current = try await store.find(id: id) else {
            throw ServiceError(.notFound, "no user with id \(id)")
        }
        if current.role == .admin, let role, role != .admin, try await store.count(role: .admin) == 1 {
            throw ServiceError(.conflict, "cannot demote the last admin")
        }
        guard let user = try await store.update(id: id, role: role, passwordHash: hash, now: clock.now()) else {
            throw ServiceError(.notFound, "no user with id \(id)")
        }
        return user
    }

    public func get(id: String) async throws -> User {
        guard Identifier.isWellFormed(id), let user = try await store.find(id: id) else {
            throw ServiceError(.notFound, "no user with id \(id)")
        }
        return user
    }

    public func list(role: Role?, page: PageRequest) async throws -> Page<User> {
        try await store.list(role: role, page: page)
    }

    public func delete(id: String) async throws {
        let user = try await get(id: id)
        if user.role == .admin, try await store.count(role: .admin) == 1 {
            throw ServiceError(.conflict, "cannot delete the last admin")
        }
        _ = try await store.delete(id: id)
    }

    /// Checks a username and password; `nil` for a wrong pair (which of the two is not told).
    public func login(username: String, password: Secret) async throws -> IssuedTokens? {
        guard let found = try await store.findForLogin(username: username) else {
            // Hash anyway so a missing user takes as long as a wrong password.
            _ = try await hasher.verify(password, hash: Self.timingDummyHash)
            return nil
        }
        guard try await hasher.verify(password, hash: found.passwordHash) else { return nil }
        return try await tokens.issue(for: found.user)
    }

    /// A new token pair from a valid refresh token, for a user who still exists (with their current role).
    public func refresh(_ refreshToken: String) async throws -> IssuedTokens? {
        guard let claims = await tokens.verify(refreshToken, refresh: true),
            let user = try await store.find(id: claims.sub.value)
        else { return nil }
        return try await tokens.issue(for: user)
    }

    /// Who a bearer token belongs to: the static API token, a personal API token, or an access JWT.
    public func authenticate(bearer token: String) async throws -> Principal? {
        if let apiToken, TokenService.constantTimeEquals(Secret(token), apiToken) {
            return Principal(kind: .machine, role: .admin)
        }
        if token.hasPrefix(TokenService.personalTokenPrefix) {
            guard let user = try await store.userForToken(hash: TokenService.hashPersonalToken(Secret(token)), now: clock.now())
            else { return nil }
            return Principal(kind: .user(id: user.id, username: user.username), role: user.role)
        }
        guard let claims = await tokens.verify(token) else { return nil }
        // The role comes from the store, so a demoted or deleted user loses access at once.
        guard let user = try await store.find(id: claims.sub.value) else { return nil }
        return Principal(kind: .user(id: user.id, username: user.username), role: user.role)
    }

    /// Creates a personal API token for `username`; the token is returned once and only its hash is stored.
    public func createPersonalToken(username: String, name: String) async throws -> (token: Secret, record: APITokenRecord) {
        guard let found = try await store.findForLogin(username: username) else {
            throw ServiceError(.notFound, "no user named '\(username)'")
        }
        let token = TokenService.makePersonalToken()
        let record = try await store.createToken(
            userID: found.user.id, name: name, tokenHash: TokenService.hashPersonalToken(token), now: clock.now())
        return (token, record)
    }

    /// Whether any admin exists (for `integrator dev`'s first-run setup).
    public func hasAdmin() async throws -> Bool {
        try await store.count(role: .admin) > 0
    }

    static func problem(withUsername username: String?) -> String? {
        guard let username else { return "is required" }
        guard (1...64).contains(username.count) else { return "must be 1 to 64 characters" }
        guard username.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-@".contains($0)) }) else {
            return "may contain only letters, digits, '.', '_', '-' and '@'"
        }
        return nil
    }

    /// A bcrypt hash of a random string, compared against when the user does not exist.
    private static let timingDummyHash = "$2b$12$C6UzMDM.H6dfI/f/IKxGhuXi0/3Z9p6yqfP0L1EGu9lkYe1kV7nSa"
}
