// Creating, changing and reading credentials: validation against the type's fields, encryption, masking.
import Foundation
import Logging

/// Credentials as the API shows them: public fields in full, secret fields as masks.
public struct CredentialsView: Sendable {
    public var id: String
    public var name: String
    public var type: String
    public var publicValues: [String: JSONValue]
    /// Names of the secret fields that are set.
    public var secretNames: [String]
    public var createdAt: Date
    public var updatedAt: Date
}

/// The credentials use cases, shared by the API and the CLI.
public struct CredentialsService: Sendable {
    let store: CredentialStore
    let registry: PluginRegistry
    let box: SecretBox
    let clock: any TimeSource
    /// Gives connection tests a working HTTP client.
    let outbound: OutboundHTTP?

    public init(
        store: CredentialStore, registry: PluginRegistry, box: SecretBox, clock: any TimeSource, outbound: OutboundHTTP? = nil
    ) {
        self.store = store
        self.registry = registry
        self.box = box
        self.clock = clock
        self.outbound = outbound
    }

    /// Creates credentials from `{"name", "type", "public", "secret"}`.
    public func create(_ body: JSONValue) async throws -> CredentialsView {
        var input = try InputObject(body)
        let name = input.string("name", required: true)
        let typeID = input.string("type", required: true, length: 1...100)
        let publicValue = input.raw("public")
        let secretValue = input.raw("secret")
        var type: (any CredentialsType)?
        if let typeID {
            type = registry.credentialsType(typeID)
            if type == nil { input.addIssue("type", unknownTypeMessage(typeID)) }
        }
        var publicValues: [String: JSONValue] = [:]
        var secretValues: [String: JSONValue] = [:]
        if let type {
            var fieldIssues: [FieldIssue] = []
            publicValues = type.publicFields.normalized(publicValue, at: "public", collecting: &fieldIssues)
            secretValues = type.secretFields.normalized(secretValue, at: "secret", collecting: &fieldIssues)
            input.add(fieldIssues)
            if input.issues.isEmpty {
                input.add(type.validate(Self.values(typeID: type.id, publicValues, secretValues)))
            }
        }
        try input.finish()
        guard let name, let type else { throw ValidationFailure(input.issues) }
        let now = clock.now()
        let id = Identifier.make(now: now)
        let stored = StoredCredentials(
            id: id, name: name, type: type.id, publicData: publicValues,
            secretEnvelope: try box.seal(secretValues, boundTo: id), createdAt: now, updatedAt: now)
        do {
            try await store.insert(stored)
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "credentials named '\(name)' already exist")
        }
        return view(stored, secretNames: secretValues.keys.sorted())
    }

    /// Changes name, public and/or secret fields. `public` and `secret` are merged into what is stored
    /// (a member set to null removes it), so public fields change without resending secrets.
    public func update(id: String, _ body: JSONValue) async throws -> CredentialsView {
        guard let stored = try await find(id: id) else { throw ServiceError(.notFound, "no credentials with id \(id)") }
        guard let type = registry.credentialsType(stored.type) else {
            throw ServiceError(.unsupported, "credentials type '\(stored.type)' is not registered in this build")
        }
        var input = try InputObject(body)
        let name = input.string("name")
        if let newType = input.string("type", length: 1...100), newType != stored.type {
            input.addIssue("type", "cannot be changed; create new credentials instead")
        }
        let publicPatch = input.object("public")
        let secretPatch = input.object("secret")
        try input.finish()

        let currentSecrets = try box.open(stored.secretEnvelope, boundTo: stored.id)
        let mergedPublic = Self.merge(stored.publicData, publicPatch)
        let mergedSecret = Self.merge(currentSecrets, secretPatch)
        var issues: [FieldIssue] = []
        let publicValues = type.publicFields.normalized(.object(mergedPublic), at: "public", collecting: &issues)
        let secretValues = type.secretFields.normalized(.object(mergedSecret), at: "secret", collecting: &issues)
        if !issues.isEmpty { throw ValidationFailure(issues) }
        issues = type.validate(Self.values(typeID: type.id, publicValues, secretValues))
        if !issues.isEmpty { throw ValidationFailure(issues) }

        var updated = stored
        updated.name = name ?? stored.name
        updated.publicData = publicValues
        if secretPatch != nil || box.needsRotation(stored.secretEnvelope) {
            updated.secretEnvelope = try box.seal(secretValues, boundTo: stored.id)
        }
        updated.updatedAt = clock.now()
        do {
            try await store.update(updated)
        } catch let error as StoreError where error.code == .conflict {
            throw ServiceError(.conflict, "credentials named '\(updated.name)' already exist")
        }
        return view(updated, secretNames: secretValues.keys.sorted())
    }

    public func get(id: String) async throws -> CredentialsView {
        guard let stored = try await find(id: id) else { throw ServiceError(.notFound, "no credentials with id \(id)") }
        return try view(stored)
    }

    public func list(type: String?, page: PageRequest) async throws -> Page<CredentialsView> {
        try await store.list(type: type, page: page).map(view)
    }

    public func delete(id: String) async throws {
        switch try await store.delete(id: id) {
        case .deleted: return
        case .notFound: throw ServiceError(.notFound, "no credentials with id \(id)")
        case .inUse(let names):
            throw ServiceError(.conflict, "credentials are used by integrations: \(names.joined(separator: ", ")); delete or repoint them first")
        }
    }

    /// Decrypted values for the engine's own use (fetches, connection tests). Never returned by the API.
    public func decrypted(id: String) async throws -> CredentialValues {
        guard let stored = try await find(id: id) else { throw ServiceError(.notFound, "no credentials with id \(id)") }
        let secrets = try box.open(stored.secretEnvelope, boundTo: stored.id)
        return Self.values(typeID: stored.type, stored.publicData, secrets)
    }

    /// Runs the type's connection test.
    public func test(id: String, logger: Logger) async throws -> ConnectionTestResult {
        let values = try await decrypted(id: id)
        guard let tester = registry.credentialsType(values.typeID) as? any ConnectionTesting else {
            throw ServiceError(.unsupported, "credentials type '\(values.typeID)' has no connection test")
        }
        do {
            let http = outbound?.client(for: values, credentialsID: id, type: tester, logger: logger) ?? .unavailable
            return try await tester.testConnection(values, context: PluginContext(logger: logger, http: http))
        } catch let error as PluginError {
            return .failure(error.message)
        } catch let error as OutboundError where error.isRefusedAsConfigured {
            // The credentials (or the type's defaults) point somewhere Integrator will not go: the caller can fix that.
            throw ServiceError(.unsupported, "the connection test cannot run: \(error)")
        } catch let error as OutboundError {
            throw ServiceError(.upstream, "the connection test could not reach the service: \(error)")
        }
    }

    private func find(id: String) async throws -> StoredCredentials? {
        guard Identifier.isWellFormed(id) else { return nil }
        return try await store.find(id: id)
    }

    private func view(_ stored: StoredCredentials) throws -> CredentialsView {
        // The envelope is the only record of which secret fields are set; opening it costs microseconds.
        // If the key that sealed it is gone, fall back to the type's declared secret fields.
        let names: [String]
        if let secrets = try? box.open(stored.secretEnvelope, boundTo: stored.id) {
            names = secrets.keys.sorted()
        } else {
            names = registry.credentialsType(stored.type)?.secretFields.fields.map(\.name) ?? []
        }
        return view(stored, secretNames: names)
    }

    private func view(_ stored: StoredCredentials, secretNames: [String]) -> CredentialsView {
        CredentialsView(
            id: stored.id, name: stored.name, type: stored.type, publicValues: stored.publicData,
            secretNames: secretNames, createdAt: stored.createdAt, updatedAt: stored.updatedAt)
    }

    private func unknownTypeMessage(_ typeID: String) -> String {
        "unknown credentials type '\(typeID)'; known types: \(registry.credentialsTypes.map(\.id).joined(separator: ", "))"
    }

    static func merge(_ base: [String: JSONValue], _ patch: JSONValue?) -> [String: JSONValue] {
        guard let patch = patch?.objectValue else { return base }
        var result = base
        for (key, value) in patch {
            if value == .null { result.removeValue(forKey: key) } else { result[key] = value }
        }
        return result
    }

    static func values(typeID: String, _ publicValues: [String: JSONValue], _ secretValues: [String: JSONValue])
        -> CredentialValues
    {
        var secrets: [String: Secret] = [:]
        for (key, value) in secretValues {
            secrets[key] = Secret(value.stringValue ?? value.encodedString())
        }
        return CredentialValues(typeID: typeID, publicValues: publicValues, secretValues: secrets)
    }
}
