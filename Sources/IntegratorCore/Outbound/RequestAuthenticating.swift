// How a credentials type signs outbound requests, so providers never handle secrets themselves.

/// A credentials type that knows how to apply itself to an outbound request. ``OutboundClient`` calls it for every
/// request to the client's base URL origin (never for other origins, so a link to elsewhere does not leak the secret).
public protocol RequestAuthenticating: CredentialsType {
    /// Adds the credentials to `request`: a header, a query parameter, a signature.
    /// - Throws: ``PluginError`` (permanent) when the stored credentials lack what is needed.
    func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws

    /// The base URL these credentials point at (Sympla's `base_url`), or `nil` when they carry none and the
    /// provider sets one.
    func baseURL(for credentials: CredentialValues) -> String?
}

extension RequestAuthenticating {
    public func baseURL(for credentials: CredentialValues) -> String? { nil }

    /// The secret field `name`, or a permanent error naming the missing field (never a value).
    public func requiredSecret(_ name: String, in credentials: CredentialValues) throws -> Secret {
        guard let secret = credentials.secret(name), !secret.reveal().isEmpty else {
            throw PluginError("credentials of type '\(id)' have no secret '\(name)'", permanent: true)
        }
        return secret
    }
}
