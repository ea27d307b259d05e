// The list of plugins built into the `integrator` program. Add a new plugin here.
import IntegratorCore

public enum BuiltinPlugins {
    /// Every built-in plugin, in registration order, with default options.
    public static let all: [Plugin] = plugins(webhooks: WebhooksOptions(), chatBuffer: ChatBufferOptions())

    private static func plugins(webhooks: WebhooksOptions, chatBuffer: ChatBufferOptions) -> [Plugin] {
        [.core, .fetchPipeline, .generic, .demo, .sympla, .webhooks(options: webhooks), .scheduledMessages, .blip, .chatBuffer(options: chatBuffer)]
    }

    /// The registry of the built-in plugins, with their options read from the process's environment.
    /// - Throws: ``ConfigurationError`` for a malformed plugin setting; ``RegistryError`` if two plugins collide (a
    ///   build that does this cannot start).
    public static func registry() throws -> PluginRegistry {
        try PluginRegistry(plugins(webhooks: try WebhooksOptions.fromEnvironment(), chatBuffer: try ChatBufferOptions.fromEnvironment()))
    }
}
