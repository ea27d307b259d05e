// How a plugin declares a kind of credentials: public fields, secret fields, extra checks, an optional connection test.
import Logging

/// A kind of credentials (an API key, a bearer token, a login). Stateless: one instance serves every stored credential of its kind.
public protocol CredentialsType: Sendable {
    /// Stable identifier stored with each credential, such as `http-bearer`. Never change it once released.
    var id: String { get }
    /// Human-readable name for the admin UI.
    var name: String { get }
    /// Fields shown back to users (URLs, usernames, header names).
    var publicFields: FieldSet { get }
    /// Fields that are encrypted at rest and never shown again.
    var secretFields: FieldSet { get }
    /// Checks that involve more than one field. Called after each field passed its own declaration.
    /// Issues name paths under `public.` or `secret.`.
    func validate(_ credentials: CredentialValues) -> [FieldIssue]
}

extension CredentialsType {
    public func validate(_ credentials: CredentialValues) -> [FieldIssue] { [] }
}

/// The optional ability to check that credentials work against the real service.
public protocol ConnectionTesting: CredentialsType {
    /// Tries the credentials. Throw ``PluginError`` (or return a failed result) with a message that contains no secret.
    func testConnection(_ credentials: CredentialValues, context: PluginContext) async throws -> ConnectionTestResult
}

/// What a connection test found.
public struct ConnectionTestResult: Sendable, Equatable {
    public var ok: Bool
    public var message: String

    public init(ok: Bool, message: String) {
        self.ok = ok
        self.message = message
    }

    public static func success(_ message: String = "connected") -> Self { .init(ok: true, message: message) }
    public static func failure(_ message: String) -> Self { .init(ok: false, message: message) }
}

/// Decrypted credentials as plugins see them. Secret values are ``Secret``s, so printing or logging this shows masks.
public struct CredentialValues: Sendable, CustomStringConvertible {
    public var typeID: String
    public var publicValues: [String: JSONValue]
    public var secretValues: [String: Secret]

    public init(typeID: String, publicValues: [String: JSONValue], secretValues: [String: Secret]) {
        self.typeID = typeID
        self.publicValues = publicValues
        self.secretValues = secretValues
    }

    /// A public field as text.
    public func string(_ name: String) -> String? { publicValues[name]?.stringValue }

    /// A secret field.
    public func secret(_ name: String) -> Secret? { secretValues[name] }

    public var description: String {
        "CredentialValues(\(typeID), public: \(publicValues.keys.sorted()), secret: \(secretValues.keys.sorted()) masked)"
    }
}

/// What the engine hands a plugin when it calls it outside a fetch (a connection test).
public struct PluginContext: Sendable {
    public var logger: Logger
    /// HTTP signed with the credentials under test; see ``OutboundClient``.
    public var http: OutboundClient

    /// - Parameter http: defaults to a client that refuses every request.
    public init(logger: Logger, http: OutboundClient = .unavailable) {
        self.logger = logger
        self.http = http
    }
}

/// An error a plugin raises on purpose. Its message is shown to users and stored with runs, so it must hold no secret.
public struct PluginError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// `true` when trying again cannot help (bad credentials, a 404): workers will not retry it.
    public var isPermanent: Bool

    public init(_ message: String, permanent: Bool = false) {
        self.message = message
        self.isPermanent = permanent
    }

    public var description: String { message }
}
