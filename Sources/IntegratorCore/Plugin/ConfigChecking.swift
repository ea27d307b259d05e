// The optional ability of a provider to check an integration's config against the outside world when it is saved.

/// A provider whose config names things that exist elsewhere (a table and its columns in a customer's database) and
/// can only be checked by looking there. The integrations service calls ``check(config:credentials:)`` on create and
/// update, after the config passed its fields and `validate(config:)`; any issue refuses the save (400, nothing stored).
public protocol ConfigChecking: ProviderBackend {
    /// Issues with paths under `config.`; messages never quote secrets (a connection URL, a password).
    /// - Parameter credentials: stored credentials, for configs that name further credentials (a database's URL).
    func check(config: [String: JSONValue], credentials: CredentialsService) async -> [FieldIssue]
}
