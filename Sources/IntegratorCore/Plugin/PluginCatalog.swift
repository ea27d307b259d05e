// Plugins described as JSON, for the API, the admin forms and `integrator plugins list --json`.

/// Renders registry contents with their JSON Schemas.
public enum PluginCatalog {
    public static func render(_ plugin: Plugin) -> JSONValue {
        .object([
            "id": .string(plugin.id),
            "name": .string(plugin.name),
            "summary": .string(plugin.summary),
            "credential_types": .array(plugin.credentialsTypes.map(render)),
            "providers": .array(plugin.providers.map(render)),
            "tasks": .array(plugin.taskHandlers.map { .string($0.name) }),
            "routes": .array(plugin.routes.map { route in
                .object([
                    "method": .string(route.method.rawValue), "path": .string(route.path),
                    "role": { if case .role(let role) = route.access { .string(role.rawValue) } else { .null } }(),
                ])
            }),
            "services": .array(plugin.services.map { service in
                .object(["name": .string(service.name), "processes": .array(service.roles.map(\.rawValue).sorted().map(JSONValue.string))])
            }),
            "event_subscribers": .array(plugin.eventSubscribers.map { .string($0.name) }),
            "migrations": .number(Double(plugin.migrations.count)),
        ])
    }

    public static func render(_ type: any CredentialsType) -> JSONValue {
        .object([
            "id": .string(type.id),
            "name": .string(type.name),
            "public_schema": type.publicFields.jsonSchema(title: "\(type.name): public fields"),
            "secret_schema": type.secretFields.jsonSchema(title: "\(type.name): secret fields"),
            "connection_test": .bool(type is any ConnectionTesting),
        ])
    }

    public static func render(_ provider: any ProviderBackend) -> JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(provider.id),
            "name": .string(provider.name),
            "category": .string(provider.category),
            "allowed_credential_types": .array(provider.allowedCredentialTypes.map(JSONValue.string)),
            "config_schema": provider.configFields.jsonSchema(title: "\(provider.name): config"),
        ]
        if let schedule = provider.suggestedSchedule { object["suggested_schedule"] = .string(schedule) }
        return .object(object)
    }
}
