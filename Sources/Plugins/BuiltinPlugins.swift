// The list of plugins built into the `integrator` program. Add a new plugin here.
import IntegratorCore

public enum BuiltinPlugins {
    /// Every built-in plugin, in registration order.
    public static let all: [Plugin] = [.core, .fetchPipeline, .generic, .demo, .sympla]

    /// The registry of the built-in plugins.
    /// - Throws: ``RegistryError`` if two plugins collide; a build that does this cannot start.
    public static func registry() throws(RegistryError) -> PluginRegistry {
        try PluginRegistry(all)
    }
}
