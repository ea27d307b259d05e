// A cookie-keeping client for the admin web UI over the test server: logs in through the login form and posts forms
// with the session's CSRF token, as a browser would.
import Foundation
import Hummingbird
import HummingbirdTesting
import IntegratorCore
import NIOCore
import Synchronization

/// One browser session against a ``TestApp``.
final class AdminBrowser: Sendable {
    let client: any TestClientProtocol
    private let cookies = Mutex<[String: String]>([:])

    init(_ app: TestApp) { client = app.client }

    struct Page: Sendable {
        let status: HTTPResponse.Status
        let location: String?
        let setCookies: [String]
        let html: String

        /// The value of the first `name="_csrf"` input on the page.
        var csrfToken: String? { Self.value(of: "_csrf", in: html) }

        static func value(of name: String, in html: String) -> String? {
            guard let input = html.range(of: "name=\"\(name)\" value=\"") else { return nil }
            let rest = html[input.upperBound...]
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }
    }

    var cookieHeader: String { cookies.withLock { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") } }

    func get(_ path: String) async throws -> Page {
        try await send(.get, path, body: nil)
    }

    /// Posts `fields` as a form, adding the CSRF token of `csrfFrom` (a page's) unless `csrf` is given or `withToken` is false.
    func post(_ path: String, _ fields: [(String, String)], csrf: String? = nil, withToken: Bool = true) async throws -> Page {
        var pairs = fields
        if withToken {
            let token: String?
            if let csrf { token = csrf } else { token = try await get("/admin").csrfToken }
            if let token { pairs.append(("_csrf", token)) }
        }
        let body = AdminFormValues(pairs.map { (name: $0.0, value: $0.1) }).encoded
        return try await send(.post, path, body: body)
    }

    /// Logs in through the form; returns the answer to the form's post.
    @discardableResult
    func logIn(_ username: String, _ password: String) async throws -> Page {
        let form = try await get("/admin/login")
        return try await post(
            "/admin/login", [("username", username), ("password", password), ("next", "/admin")], csrf: form.csrfToken)
    }

    private func send(_ method: HTTPRequest.Method, _ path: String, body: String?) async throws -> Page {
        var headers: HTTPFields = [:]
        let cookie = cookieHeader
        if !cookie.isEmpty { headers[.cookie] = cookie }
        if body != nil { headers[.contentType] = "application/x-www-form-urlencoded" }
        let response = try await client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        let setCookies = response.headers[values: .setCookie]
        cookies.withLock { jar in
            for line in setCookies {
                guard let pair = line.split(separator: ";").first, let equals = pair.firstIndex(of: "=") else { continue }
                let name = String(pair[..<equals]).trimmingCharacters(in: .whitespaces)
                let value = String(pair[pair.index(after: equals)...])
                if value.isEmpty || line.contains("Max-Age=0") { jar[name] = nil } else { jar[name] = value }
            }
        }
        return Page(status: response.status, location: response.headers[.location], setCookies: setCookies, html: String(buffer: response.body))
    }
}
