// Logging in and out of the admin: the API's users and passwords, a session cookie, and a CSRF token on the login
// form itself (kept in a cookie of its own until there is a session).
import Foundation
import Hummingbird

extension AdminApp {
    func addSessionRoutes(to router: Router<APIRequestContext>) {
        router.get("admin/login") { request, _ in
            let query = AdminFormValues(urlEncoded: Substring(request.uri.query ?? ""))
            if try await session(of: request) != nil { return Self.redirect(to: Self.safeNext(query["next"])) }
            return loginPage(request, next: query["next"], notice: query["notice"], error: nil, username: "", status: .ok)
        }
        router.post("admin/login") { request, context in
            let form = try await readForm(request)
            let next = form["next"]
            guard let expected = request.cookies[Self.loginCookie]?.value, let given = form[Self.csrfField],
                TokenService.constantTimeEquals(Secret(expected), Secret(given))
            else {
                return loginPage(
                    request, next: next, notice: nil, error: "The login form expired. Please log in again.",
                    username: form["username"] ?? "", status: .forbidden)
            }
            guard let username = form["username"], let password = form.pairs.first(where: { $0.name == "password" })?.value,
                !password.isEmpty, let user = try await runtime.users.verifyLogin(username: username, password: Secret(password))
            else {
                context.logger.notice("admin login refused")
                return loginPage(
                    request, next: next, notice: nil, error: "Wrong username or password.", username: form["username"] ?? "",
                    status: .unauthorized)
            }
            let (token, _) = try await sessions.create(for: user)
            context.logger.info("admin login", metadata: ["user": "\(user.username)"])
            var headers = HTTPFields()
            headers[values: .setCookie] = [
                sessionCookie(token, request, maxAge: nil).description,
                Self.expiredCookie(Self.loginCookie).description,
            ]
            return Self.redirect(to: Self.safeNext(next), headers: headers)
        }
        router.post("admin/logout") { request, context in
            if let session = try await session(of: request), let token = request.cookies[Self.sessionCookie]?.value {
                let form = try await readForm(request)
                guard let given = form[Self.csrfField], TokenService.constantTimeEquals(Secret(given), Secret(session.csrfToken)) else {
                    return render(Self.csrfRefusedPage, session, request, status: .forbidden)
                }
                try await sessions.delete(token: token)
                context.logger.info("admin logout", metadata: ["user": "\(session.user.username)"])
            }
            var headers = HTTPFields()
            headers[values: .setCookie] = [Self.expiredCookie(Self.sessionCookie).description]
            return Self.redirect(to: "/admin/login?notice=" + AdminFormValues.encode("You are logged out."), headers: headers)
        }
    }

    /// The login form with a fresh CSRF token, set in its cookie too.
    private func loginPage(
        _ request: Request, next: String?, notice: String?, error: String?, username: String, status: HTTPResponse.Status
    ) -> Response {
        let csrf = AdminSessionStore.randomToken()
        var object: [String: Any] = ["csrf": csrf, "next": Self.safeNext(next), "username": username]
        if let notice { object["notice"] = notice }
        if let error { object["error"] = error }
        let cookie = Cookie(
            name: Self.loginCookie, value: csrf, maxAge: 3600, path: "/admin", secure: Self.isSecure(request), httpOnly: true,
            sameSite: .strict)
        return Self.html(templates.render(object, template: "login"), status: status, headers: [.setCookie: cookie.description])
    }

    private func sessionCookie(_ token: String, _ request: Request, maxAge: Int?) -> Cookie {
        Cookie(
            name: Self.sessionCookie, value: token, maxAge: maxAge, path: "/admin", secure: Self.isSecure(request), httpOnly: true,
            sameSite: .strict)
    }

    static func expiredCookie(_ name: String) -> Cookie {
        Cookie(name: name, value: "", maxAge: 0, path: "/admin", httpOnly: true, sameSite: .strict)
    }

    /// Where to go after logging in: an admin path, never another site.
    static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/admin"), !next.hasPrefix("//"), !next.contains("\\"), !next.hasPrefix("/admin/login")
        else { return "/admin" }
        return next
    }
}

extension UsersService {
    /// The user a username and password belong to, or `nil` for a wrong pair (taking as long either way).
    func verifyLogin(username: String, password: Secret) async throws -> User? {
        guard username.count <= 64, password.reveal().count <= 1000 else { return nil }
        // The API's login checks the password (in constant time for unknown users); its tokens are not needed here.
        guard try await login(username: username, password: password) != nil else { return nil }
        return try await store.findForLogin(username: username)?.user
    }
}
