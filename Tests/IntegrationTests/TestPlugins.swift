// Plugins that exist only in tests: a provider that needs credentials, and a credentials type with a connection test.
import IntegratorCore

/// Accepts only `http-header` credentials, to test the credentials/provider compatibility rules.
struct HeaderOnlyProvider: ProviderBackend {
    let id = "header-only"
    let name = "Header-only test provider"
    let category = "testing"
    let allowedCredentialTypes = ["http-header"]
    let configFields: FieldSet = [
        .string("base_url", title: "Base URL", required: true, format: .url),
        .choices("streams", title: "Streams", options: ["events", "orders"], default: ["events"]),
    ]

    func fetch(_ context: FetchContext) async throws {}
}

/// A credentials type whose connection test succeeds only for the key `good-key`.
struct CheckedKeyCredentials: ConnectionTesting {
    let id = "checked-key"
    let name = "Checked key"
    let publicFields: FieldSet = []
    let secretFields: FieldSet = [.secret("api_key", title: "API key")]

    func testConnection(_ credentials: CredentialValues, context: PluginContext) async throws -> ConnectionTestResult {
        guard credentials.secret("api_key")?.reveal() == "good-key" else {
            throw PluginError("the service rejected the API key", permanent: true)
        }
        return .success("reached the service")
    }
}

extension Plugin {
    static let testing = Plugin(
        id: "testing", name: "Test plugin", credentialsTypes: [CheckedKeyCredentials()], providers: [HeaderOnlyProvider()])
}
