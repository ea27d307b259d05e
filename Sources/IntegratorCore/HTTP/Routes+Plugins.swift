// /api/v1/plugins, /credential-types, /providers: what this build can do, with JSON Schemas for forms.
import Hummingbird

extension Routes {
    func addPlugins(to group: RouterGroup<APIRequestContext>) {
        let registry = runtime.registry
        group.get("plugins") { _, context in
            _ = try context.require(.viewer)
            return JSONValue.object(["items": .array(registry.plugins.map(PluginCatalog.render))]).response()
        }
        group.get("credential-types") { _, context in
            _ = try context.require(.viewer)
            return JSONValue.object(["items": .array(registry.credentialsTypes.map(PluginCatalog.render))]).response()
        }
        group.get("credential-types/:id") { _, context in
            _ = try context.require(.viewer)
            let id = try context.parameters.require("id")
            guard let type = registry.credentialsType(id) else { throw APIError.notFound("no credentials type '\(id)'") }
            return PluginCatalog.render(type).response()
        }
        group.get("providers") { _, context in
            _ = try context.require(.viewer)
            return JSONValue.object(["items": .array(registry.providers.map(PluginCatalog.render))]).response()
        }
        group.get("providers/:id") { _, context in
            _ = try context.require(.viewer)
            let id = try context.parameters.require("id")
            guard let provider = registry.provider(id) else { throw APIError.notFound("no provider '\(id)'") }
            return PluginCatalog.render(provider).response()
        }
    }
}
