// The `sympla` credentials type: an API key sent as the `s_token` header, and the API's base URL.
import IntegratorCore

/// Credentials for Sympla's public API. The key comes from Sympla's "Minha Conta › Integrações" page.
public struct SymplaCredentials: RequestAuthenticating, ConnectionTesting {
    public static let defaultBaseURL = "https://api.sympla.com.br/public/v3"

    public let id = "sympla"
    public let name = "Sympla API"
    public let publicFields: FieldSet = [
        .string(
            "base_url", title: "Base URL", help: "The API root; change it only to point at a test server.",
            default: SymplaCredentials.defaultBaseURL, format: .url, maxLength: 500)
    ]
    public let secretFields: FieldSet = [
        .secret("api_key", title: "API key", help: "Sent as the `s_token` header.", maxLength: 64)
    ]

    public init() {}

    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        request.setHeader("s_token", try requiredSecret("api_key", in: credentials).reveal())
    }

    public func baseURL(for credentials: CredentialValues) -> String? {
        credentials.string("base_url") ?? Self.defaultBaseURL
    }

    /// Lists one event: it proves the key is accepted and the base URL answers like Sympla.
    public func testConnection(_ credentials: CredentialValues, context: PluginContext) async throws -> ConnectionTestResult {
        let api = SymplaAPI(http: context.http, apiKey: credentials.secret("api_key"))
        do {
            let page = try await api.events(page: 1, pageSize: 1, filter: SymplaEventFilter(from: nil, published: true))
            return .success(page.items.isEmpty ? "connected; the key sees no published events yet" : "connected; the key can list events")
        } catch let error as OutboundError {
            return .failure(error.description)
        }
    }
}
