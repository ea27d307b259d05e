// GET /api/v1/schema (the OpenAPI document), /api/v1/docs (Swagger UI) and /api/v1/redoc (Redoc). The pages load
// their scripts from jsDelivr, as FastAPI's do, or from INTEGRATOR_DOCS_ASSETS_URL.
import Hummingbird
import Synchronization

/// The HTML of the interactive docs pages.
public enum APIDocsPages {
    public static let schemaPath = "/api/v1/schema"
    static let swaggerUIBase = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
    static let redocBase = "https://cdn.jsdelivr.net/npm/redoc@2/bundles"

    /// `text` as a base for asset URLs (without a trailing slash), or `nil` when it is not an http(s) URL or an absolute
    /// path, or holds characters that could leave the HTML attribute it is written into.
    public static func assetsBase(_ text: String) -> String? {
        let forbidden = Set("\"'<>`\\ \t\r\n")
        guard !text.contains(where: { forbidden.contains($0) }) else { return nil }
        let lowered = text.lowercased()
        let isURL = (lowered.hasPrefix("https://") || lowered.hasPrefix("http://")) && text.split(separator: "/").count >= 2
        let isPath = text.hasPrefix("/") && !text.hasPrefix("//")
        guard isURL || isPath else { return nil }
        var base = text
        while base.count > 1, base.hasSuffix("/") { base.removeLast() }
        return base == "/" ? "" : base
    }

    /// Swagger UI over the document, with `assets` (from ``assetsBase(_:)``) or the CDN.
    public static func swaggerUI(assets: String?) -> String {
        let script = "\(assets ?? swaggerUIBase)/swagger-ui-bundle.js"
        let style = "\(assets ?? swaggerUIBase)/swagger-ui.css"
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Integrator API - Swagger UI</title>
            <link rel="stylesheet" type="text/css" href="\(style)">
            </head>
            <body>
            <div id="swagger-ui"></div>
            <script src="\(script)"></script>
            <script>
            window.ui = SwaggerUIBundle({
              url: "\(schemaPath)",
              dom_id: "#swagger-ui",
              layout: "BaseLayout",
              deepLinking: true,
              showExtensions: true,
              showCommonExtensions: true,
              presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
            });
            </script>
            </body>
            </html>
            """
    }

    /// Redoc over the document, with `assets` (from ``assetsBase(_:)``) or the CDN.
    public static func redoc(assets: String?) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Integrator API - Redoc</title>
        <style>body { margin: 0; padding: 0; }</style>
        </head>
        <body>
        <noscript>Redoc needs JavaScript to show the documentation.</noscript>
        <redoc spec-url="\(schemaPath)"></redoc>
        <script src="\(assets ?? redocBase)/redoc.standalone.js"></script>
        </body>
        </html>
        """
    }
}

/// The document, made once on first request: the routes and plugins do not change while the server runs.
final class OpenAPIDocumentCache: Sendable {
    private let catalog: RouteCatalog
    private let registry: PluginRegistry
    private let encoded = Mutex<String?>(nil)

    init(catalog: RouteCatalog, registry: PluginRegistry) {
        self.catalog = catalog
        self.registry = registry
    }

    var text: String {
        encoded.withLock { cached in
            if let cached { return cached }
            let text = OpenAPIDocument.make(routes: catalog.routes, registry: registry).encodedString()
            cached = text
            return text
        }
    }
}

extension Routes {
    /// The document and the two pages, open like the rest of the docs so a browser can show them without a token.
    func addDocumentation(to root: DocumentedRoutes) {
        let document = OpenAPIDocumentCache(catalog: root.catalog, registry: runtime.registry)
        let assets = runtime.settings.docsAssetsURL
        let api = root.group("api/v1")
        api.get("schema", access: .open, .schema) { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: document.text)))
        }
        let swaggerUI = APIDocsPages.swaggerUI(assets: assets)
        api.get("docs", access: .open, .docsPage("Swagger UI")) { _, _ in Self.html(swaggerUI) }
        let redoc = APIDocsPages.redoc(assets: assets)
        api.get("redoc", access: .open, .docsPage("Redoc")) { _, _ in Self.html(redoc) }
    }

    private static func html(_ page: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
    }
}

extension APIOperation {
    static let schema = APIOperation(
        "The OpenAPI 3.1 document of this server", tag: "docs",
        description: "Every route of the engine and of the installed plugins, with the plugins' credentials and config schemas.",
        responses: [
            .ok("The document.", OpenAPISchema.record(["openapi": OpenAPISchema.string, "paths": OpenAPISchema.anyObject]))
        ])

    static func docsPage(_ name: String) -> APIOperation {
        APIOperation(
            "\(name) over the OpenAPI document", tag: "docs",
            description: "An HTML page that loads \(name) from jsDelivr, or from INTEGRATOR_DOCS_ASSETS_URL when it is set.",
            responses: [APIResponse(200, "The page.", schema: OpenAPISchema.string, contentType: "text/html")])
    }
}
