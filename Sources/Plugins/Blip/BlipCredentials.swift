// The `blip` credentials type (a bot's HTTP key, `Authorization: Key …`) and `blip-database` (a business database's URL).
import Foundation
import IntegratorCore

/// A BLiP bot's HTTP credentials: the key from the bot's settings ("Configurações › Informações de conexão"), and
/// the HTTP endpoint, which contracts with their own host (`https://{contract}.http.msging.net`) override.
public struct BlipCredentials: RequestAuthenticating, ConnectionTesting {
    public static let defaultBaseURL = "https://http.msging.net"

    public let id = "blip"
    public let name = "BLiP bot (HTTP)"
    public let publicFields: FieldSet = [
        .string(
            "base_url", title: "Base URL",
            help: "BLiP's HTTP endpoint; a contract's own host (https://{contract}.http.msging.net) or a test server.",
            default: BlipCredentials.defaultBaseURL, format: .url, maxLength: 500)
    ]
    public let secretFields: FieldSet = [
        .secret("key", title: "Key", help: "The bot's authorization key, sent as `Authorization: Key …`.", maxLength: 500),
        .secret(
            "status_secret", title: "Status callback secret",
            help: "BLiP's message notifications must carry it (X-Blip-Secret header or ?secret=) to be accepted.",
            required: false, minLength: 16, maxLength: 200),
    ]

    public init() {}

    public func authenticate(_ request: inout OutboundRequest, with credentials: CredentialValues) throws {
        request.setHeader("Authorization", "Key " + (try requiredSecret("key", in: credentials).reveal()))
    }

    public func baseURL(for credentials: CredentialValues) -> String? {
        credentials.string("base_url") ?? Self.defaultBaseURL
    }

    /// Reads the bot's own account: one authenticated command that changes nothing.
    public func testConnection(_ credentials: CredentialValues, context: PluginContext) async throws -> ConnectionTestResult {
        do {
            let name = try await BlipAPI(http: context.http).botAccountName()
            return .success(name.map { "connected as \($0)" } ?? "connected")
        } catch let error as BlipAPI.Failure {
            return .failure(error.message)
        } catch let error as OutboundError {
            return .failure(error.description)
        }
    }
}

/// A PostgreSQL database that holds a business table of notifications (the seed's own database).
public struct BlipDatabaseCredentials: CredentialsType {
    public let id = "blip-database"
    public let name = "Notifications database (PostgreSQL)"
    public let publicFields: FieldSet = []
    public let secretFields: FieldSet = [
        .secret(
            "url", title: "Connection URL", help: "postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=disable|prefer|require",
            maxLength: 2000)
    ]

    public init() {}

    public func validate(_ credentials: CredentialValues) -> [FieldIssue] {
        guard let url = credentials.secret("url")?.reveal() else { return [] }
        guard case .postgres? = try? DatabaseLocation(parsing: url, variable: "url") else {
            return [FieldIssue(field: "secret.url", message: "must be a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL")]
        }
        return []
    }
}
