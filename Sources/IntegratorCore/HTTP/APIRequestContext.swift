// The per-request context of the API: Hummingbird's core storage plus who is calling.
import Hummingbird

/// Request context for every route. `principal` is set by ``AuthenticationMiddleware``.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var principal: Principal?

    public init(source: Source) {
        self.coreContext = .init(source: source)
        self.principal = nil
    }

    /// The caller, who must hold at least `role`.
    /// - Throws: 401 without a principal, 403 with too little role.
    public func require(_ role: Role) throws -> Principal {
        guard let principal else { throw APIError.unauthorized }
        guard principal.role >= role else { throw APIError.forbidden(role) }
        return principal
    }
}
