// Who is making a request, once authenticated.

/// An authenticated caller.
public struct Principal: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// A user who logged in (JWT) or uses a personal API token.
        case user(id: String, username: String)
        /// The static `INTEGRATOR_API_TOKEN`.
        case machine
    }

    public var kind: Kind
    public var role: Role

    public init(kind: Kind, role: Role) {
        self.kind = kind
        self.role = role
    }

    /// For logs: a username or `api-token`, never a credential.
    public var name: String {
        switch kind {
        case .user(_, let username): username
        case .machine: "api-token"
        }
    }
}
