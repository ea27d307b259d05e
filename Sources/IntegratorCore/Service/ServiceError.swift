// Failures of the resource services that are the caller's doing; the API maps each kind to a status code.

/// A request that cannot be carried out as asked.
public struct ServiceError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case notFound
        case conflict
        case forbidden
        case unsupported
        case unavailable
        /// A service outside Integrator failed or could not be reached while serving the request.
        case upstream
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
