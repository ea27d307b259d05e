// /api/v1/plugins, /credential-types, /providers: what this build can do, with JSON Schemas for forms.
import Hummingbird

extension Routes {
    func addPlugins(to group: DocumentedRoutes) {
        let registry = runtime.registry
        group.get("plugins", access: .role(.viewer), .listPlugins) { _, context in
            return JSONValue.object(["items": .array(registry.plugins.map(PluginCatalog.render))]).response()
        }
        group.get("credential-types", access: .role(.viewer), .listCredentialTypes) { _, context in
            return JSONValue.object(["items": .array(registry.credentialsTypes.map(PluginCatalog.render))]).response()
        }
        group.get("credential-types/:id", access: .role(.viewer), .getCredentialType) { _, context in
            let id = try context.parameters.require("id")
            guard let type = registry.credentialsType(id) else { throw APIError.notFound("no credentials type '\(id)'") }
            return PluginCatalog.render(type).response()
        }
        group.get("providers", access: .role(.viewer), .listProviders) { _, context in
            return JSONValue.object(["items": .array(registry.providers.map(PluginCatalog.render))]).response()
        }
        group.get("providers/:id", access: .role(.viewer), .getProvider) { _, context in
            let id = try context.parameters.require("id")
            guard let provider = registry.provider(id) else { throw APIError.notFound("no provider '\(id)'") }
            return PluginCatalog.render(provider).response()
        }
    }
}
