// The admin web UI's server-side rules: login, logout and expiry; CSRF refusal; viewers cannot write; secrets never in
// the HTML; pagination and filters of the task runs; the schedule preview.
import Foundation
import IntegratorCore
import SQLKit
import Testing

@Suite("Admin web UI")
struct AdminTests {
    static let secretValue = "tok-ADMIN-SECRET-0123456789"

    @Test("/ sends browsers to /admin, which sends them to the login form until they log in")
    func loginRequired() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            let root = try await browser.get("/")
            #expect(root.status == .seeOther)
            #expect(root.location == "/admin")
            let dashboard = try await browser.get("/admin/tasks?state=failed")
            #expect(dashboard.status == .seeOther)
            #expect(dashboard.location?.hasPrefix("/admin/login?next=") == true)
            let login = try await browser.get("/admin/login")
            #expect(login.status == .ok)
            #expect(login.html.contains("name=\"password\""))
            #expect(login.setCookies.contains { $0.contains("HttpOnly") && $0.contains("SameSite=Strict") })
        }
    }

    @Test("a wrong password is refused; the right one opens a session cookie; logging out ends it on the server")
    func loginAndLogout() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            let wrong = try await browser.logIn("admin", "not-the-password")
            #expect(wrong.status == .unauthorized)
            #expect(wrong.html.contains("Wrong username or password."))
            let wrongUser = try await browser.logIn("nobody", TestApp.adminPassword)
            #expect(wrongUser.status == .unauthorized)

            let accepted = try await browser.logIn("admin", TestApp.adminPassword)
            #expect(accepted.status == .seeOther)
            #expect(accepted.location == "/admin")
            let session = try #require(accepted.setCookies.first { $0.hasPrefix("integrator_session=") })
            #expect(session.contains("HttpOnly"))
            #expect(session.contains("SameSite=Strict"))
            #expect(session.contains("Path=/admin"))
            #expect(!session.contains("Secure"), "plain HTTP: a Secure cookie would never come back")
            let stolenCookie = browser.cookieHeader

            let dashboard = try await browser.get("/admin")
            #expect(dashboard.status == .ok)
            #expect(dashboard.html.contains("<h1>Dashboard</h1>"))
            #expect(dashboard.html.contains("admin (admin)"))
            // No beat runs in the test app: the dashboard says so loudly, and draws its chart on the server.
            #expect(dashboard.html.contains("class=\"warning\" role=\"alert\">Beat missing: no beat has led ever"))
            #expect(dashboard.html.contains("<svg viewBox="))

            let logout = try await browser.post("/admin/logout", [])
            #expect(logout.status == .seeOther)
            #expect(try await browser.get("/admin").status == .seeOther)
            // The old cookie no longer opens anything: the session is gone from the store.
            let replayed = try await app.client.execute(uri: "/admin", method: .get, headers: [.cookie: stolenCookie], body: nil)
            #expect(replayed.status == .seeOther)
            let rows = try await app.runtime.database.withSQL { sql in
                try await sql.raw("SELECT COUNT(*) AS n FROM admin_sessions").first()?.decode(column: "n", as: Int.self)
            }
            #expect(rows == 0)
        }
    }

    @Test("the session cookie is Secure when the request came over TLS through a proxy")
    func secureCookieBehindTLS() async throws {
        try await TestApp.run { app in
            let form = try await app.client.execute(uri: "/admin/login", method: .get, headers: [.init("X-Forwarded-Proto")!: "https"], body: nil)
            #expect(form.headers[values: .setCookie].allSatisfy { $0.contains("Secure") })
        }
    }

    @Test("a session ends after two idle hours, and twelve hours after login however busy")
    func sessionExpiry() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            app.clock.advance(by: 3600)
            #expect(try await browser.get("/admin/plugins").status == .ok)
            app.clock.advance(by: 2 * 3600 - 30)
            #expect(try await browser.get("/admin/plugins").status == .ok, "each request extends the idle limit")
            app.clock.advance(by: 2 * 3600 + 1)
            let expired = try await browser.get("/admin/plugins")
            #expect(expired.status == .seeOther)
            #expect(expired.location?.hasPrefix("/admin/login") == true)

            let busy = AdminBrowser(app)
            try await busy.logIn("admin", TestApp.adminPassword)
            for _ in 0..<12 {
                app.clock.advance(by: 3600)
                _ = try await busy.get("/admin/plugins")
            }
            #expect(try await busy.get("/admin/plugins").status == .seeOther)
        }
    }

    @Test("a form posted without this session's CSRF token is refused and changes nothing")
    func csrfRefused() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let fields = [("name", "forged"), ("task", "core.noop"), ("timing", "interval"), ("every", "60"), ("enabled", "true")]
            let missing = try await browser.post("/admin/schedules/new", fields, withToken: false)
            #expect(missing.status == .forbidden)
            #expect(missing.html.contains("security token"))
            let wrong = try await browser.post("/admin/schedules/new", fields, csrf: "not-the-token")
            #expect(wrong.status == .forbidden)
            // Another session's token does not do either.
            let other = AdminBrowser(app)
            try await other.logIn("admin", TestApp.adminPassword)
            let othersToken = try #require(try await other.get("/admin").csrfToken)
            #expect(try await browser.post("/admin/schedules/new", fields, csrf: othersToken).status == .forbidden)
            #expect(try await app.runtime.schedules.list(enabled: nil, integrationID: nil, page: PageRequest()).items.isEmpty)
            // The login form has its own token too.
            let forgedLogin = try await AdminBrowser(app).post(
                "/admin/login", [("username", "admin"), ("password", TestApp.adminPassword)], withToken: false)
            #expect(forgedLogin.status == .forbidden)

            let accepted = try await browser.post("/admin/schedules/new", fields)
            #expect(accepted.status == .seeOther)
            #expect(try await app.runtime.schedules.list(enabled: nil, integrationID: nil, page: PageRequest()).items.count == 1)
        }
    }

    @Test("viewers see no write controls, and the server refuses their writes")
    func viewerCannotWrite() async throws {
        try await TestApp.run { app in
            let password = "viewer-password-0001"
            _ = try await app.runtime.users.create(username: "vera", role: "viewer", password: Secret(password))
            let run = try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", enqueuedAt: app.clock.now()))
            let schedule = try await app.runtime.schedules.create([
                "name": "every-minute", "task": "core.noop", "interval": ["every": 60],
            ])
            let browser = AdminBrowser(app)
            try await browser.logIn("vera", password)
            for path in ["/admin", "/admin/credentials", "/admin/integrations", "/admin/schedules", "/admin/schedules/\(schedule.id)",
                         "/admin/tasks", "/admin/tasks/\(run.id)", "/admin/plugins"] {
                let page = try await browser.get(path)
                #expect(page.status == .ok, "\(path)")
                let posts = page.html.components(separatedBy: "method=\"post\"").count - 1
                #expect(posts == 1, "\(path) has only the logout form, found \(posts) forms that post")
                #expect(!page.html.contains("formaction="), "\(path)")
                #expect(!page.html.contains(">New "), "\(path)")
            }
            #expect(try await browser.get("/admin/credentials/new").status == .forbidden)
            let token = try #require(try await browser.get("/admin").csrfToken)
            let writes: [(String, [(String, String)])] = [
                ("/admin/credentials/new", [("type", "http-bearer"), ("name", "x"), ("secret.token", "abcdef")]),
                ("/admin/schedules/disable", [("id", schedule.id)]),
                ("/admin/tasks/revoke", [("id", run.id)]),
            ]
            for (path, fields) in writes {
                let refused = try await browser.post(path, fields, csrf: token)
                #expect(refused.status == .forbidden, "\(path)")
            }
            #expect(try await app.runtime.schedules.get(id: schedule.id).enabled)
            #expect(try await app.runtime.tasks.get(id: run.id).0.state == .queued)
            #expect(try await app.runtime.credentials.list(type: nil, page: PageRequest()).items.isEmpty)
        }
    }

    @Test("credentials made through the generated form keep their secret out of every page")
    func secretNeverInHTML() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let form = try await browser.get("/admin/credentials/new?type=http-bearer")
            #expect(form.html.contains("name=\"secret.token\""))
            #expect(form.html.contains("type=\"password\""))
            let missing = try await browser.post("/admin/credentials/new", [("type", "http-bearer"), ("name", "gh")])
            #expect(missing.status == .unprocessableContent)
            #expect(missing.html.contains("field-error"))

            let created = try await browser.post(
                "/admin/credentials/new", [("type", "http-bearer"), ("name", "gh"), ("secret.token", Self.secretValue)])
            #expect(created.status == .seeOther)
            let location = try #require(created.location)
            let detail = try await browser.get(location)
            #expect(detail.html.contains("********"))
            let list = try await browser.get("/admin/credentials")
            for page in [detail, list] { #expect(!page.html.contains(Self.secretValue)) }
            let id = String(location.split(separator: "/").last?.split(separator: "?").first ?? "")
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("token")?.reveal() == Self.secretValue)

            // Saving with the secret left blank keeps it; a new value replaces it.
            #expect(try await browser.post("/admin/credentials/\(id)", [("name", "gh2"), ("secret.token", "")]).status == .seeOther)
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("token")?.reveal() == Self.secretValue)
            #expect(try await app.runtime.credentials.get(id: id).name == "gh2")
            let refused = try await browser.post("/admin/credentials/\(id)", [("name", "")])
            #expect(refused.status == .seeOther, "a blank name keeps the stored one")
            #expect(try await browser.post("/admin/credentials/\(id)", [("secret.token", "another-token-value")]).status == .seeOther)
            #expect(try await app.runtime.credentials.decrypted(id: id).secret("token")?.reveal() == "another-token-value")
        }
    }

    @Test("task runs page 50 at a time, newest first, filtered by several states at once")
    func taskRunsPaginate() async throws {
        try await TestApp.run { app in
            var ids: [String] = []
            for index in 0..<120 {
                app.clock.advance(by: 1)
                let message = try await app.runtime.tasks.enqueue(
                    TaskMessage(name: "core.noop", arguments: ["n": .number(Double(index))], enqueuedAt: app.clock.now()))
                ids.append(message.id)
            }
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            var seen: [String] = []
            var path = "/admin/tasks?state=queued&state=failed"
            var pages = 0
            while true {
                let page = try await browser.get(path)
                #expect(page.status == .ok)
                pages += 1
                seen += Self.runIDs(in: page.html)
                guard let next = Self.nextLink(in: page.html) else { break }
                #expect(next.contains("state=queued") && next.contains("state=failed"), "the next page keeps the filter")
                path = next
            }
            #expect(pages == 3)
            #expect(seen == ids.reversed())
            let none = try await browser.get("/admin/tasks?state=succeeded")
            #expect(Self.runIDs(in: none.html).isEmpty)
            #expect(none.html.contains("No runs match."))
            let bad = try await browser.get("/admin/tasks?state=finished")
            #expect(bad.status == .badRequest)
            #expect(bad.html.contains("state"))
        }
    }

    @Test("bulk revoke takes everything the filter selects")
    func bulkRevokeByFilter() async throws {
        try await TestApp.run { app in
            for queue in ["default", "default", "low"] {
                _ = try await app.runtime.tasks.enqueue(TaskMessage(name: "core.noop", queue: queue, enqueuedAt: app.clock.now()))
            }
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let answer = try await browser.post("/admin/tasks/revoke", [("filter", "queue=default&state=queued"), ("back", "tasks?queue=default")])
            #expect(answer.status == .seeOther)
            #expect(answer.location?.contains("Revoked%202%20of%202") == true)
            let counts = try await app.runtime.runs.countByState()
            #expect(counts[.revoked] == 2)
            #expect(counts[.queued] == 1)
        }
    }

    @Test("the schedule preview lists the next ten fire times in the schedule's zone, or says what is wrong")
    func schedulePreview() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let good = try await browser.get("/admin/schedules/preview.json?timing=crontab&expression=*/1+*+*+*+*&timezone=America/Sao_Paulo")
            let json = try JSONValue.parse(good.html)
            let times = json["times"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(times.count == 10)
            #expect(times.allSatisfy { $0.hasSuffix("-03:00") })
            #expect(json["timezone"] == "America/Sao_Paulo")
            let bad = try JSONValue.parse(try await browser.get("/admin/schedules/preview.json?timing=crontab&expression=61+*+*+*+*").html)
            #expect(bad["error"]?.stringValue?.contains("minute") == true)
            let zone = try JSONValue.parse(try await browser.get("/admin/schedules/preview.json?expression=*+*+*+*+*&timezone=Mars/Base").html)
            #expect(zone["error"]?.stringValue?.contains("Mars/Base") == true)
            let anonymous = try await AdminBrowser(app).get("/admin/schedules/preview.json?expression=*+*+*+*+*")
            #expect(anonymous.status == .unauthorized)
        }
    }

    @Test("plugins add their pages: webhook tenants, events with attempts, dead letters with redrive")
    func pluginPages() async throws {
        try await TestApp.run { app in
            let configured = try await app.call(
                .post, "/api/v1/webhooks/configure",
                body: ["tenant_id": "acme", "base_url": "http://127.0.0.1:9/hook", "enabled_events": ["*"], "secret_key": "acme-signing-secret-0001",
                       "retry_policy": ["max_retries": 0]])
            #expect(configured.status == .ok || configured.status == .created, "\(configured.text)")
            let sent = try await app.call(.post, "/api/v1/webhooks/send", body: ["tenant_id": "acme", "event_type": "order.paid", "payload": ["n": 1]])
            let eventID = try #require(sent.json["event_id"]?.stringValue ?? sent.json["id"]?.stringValue, "\(sent.text)")
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let dashboard = try await browser.get("/admin")
            for title in ["Webhook tenants", "Scheduled messages", "Chat buffers", "Notifications"] {
                #expect(dashboard.html.contains(">\(title)</a>"), "navigation lists \(title)")
            }
            let tenants = try await browser.get("/admin/webhooks/tenants")
            #expect(tenants.html.contains("/admin/webhooks/tenants/acme"))
            let tenant = try await browser.get("/admin/webhooks/tenants/acme")
            #expect(tenant.status == .ok)
            #expect(tenant.html.contains(eventID))
            let event = try await browser.get("/admin/webhooks/events/\(eventID)")
            #expect(event.status == .ok)
            #expect(event.html.contains("order.paid"))
            let notDead = try await browser.post("/admin/webhooks/events/\(eventID)/redrive", [])
            #expect(notDead.status == .conflict, "only dead events are redriven")
            #expect(try await browser.get("/admin/webhooks/tenants/acme/dead-letters").status == .ok)
            #expect(try await browser.get("/admin/webhooks/tenants/nobody").status == .notFound)
            for path in ["/admin/scheduled-messages", "/admin/chat-buffer", "/admin/notifications", "/admin/plugins/webhooks"] {
                #expect(try await browser.get(path).status == .ok, "\(path)")
            }
        }
    }

    @Test("an integration made through the provider's generated form; a bad number is marked at its field and changes nothing")
    func integrationForm() async throws {
        try await TestApp.run { app in
            let browser = AdminBrowser(app)
            try await browser.logIn("admin", TestApp.adminPassword)
            let form = try await browser.get("/admin/integrations/new?provider=demo")
            for name in ["config.records", "config.stream", "config.change_fraction", "config.page_size"] {
                #expect(form.html.contains("name=\"\(name)\""), "the form has \(name)")
            }
            #expect(form.html.contains("How many records each run yields. Default: 100."))
            let bad = try await browser.post(
                "/admin/integrations/new", [("provider", "demo"), ("name", "first"), ("config.records", "lots"), ("active", "true")])
            #expect(bad.status == .unprocessableContent)
            #expect(bad.html.contains("class=\"field invalid\""))
            #expect(bad.html.contains("value=\"lots\""), "what was typed is shown again")
            #expect(try await app.runtime.integrations.list(IntegrationFilter(), page: PageRequest()).items.isEmpty)
            let good = try await browser.post(
                "/admin/integrations/new", [("provider", "demo"), ("name", "first"), ("config.records", "25"), ("active", "true")])
            #expect(good.status == .seeOther)
            let created = try #require(try await app.runtime.integrations.list(IntegrationFilter(), page: PageRequest()).items.first)
            #expect(created.config["records"] == 25)
            #expect(created.config["stream"] == "items", "blank fields take their defaults")
            #expect(created.active)
            let run = try await browser.post("/admin/integrations/\(created.id)/run", [])
            #expect(run.status == .seeOther)
            #expect(run.location?.hasPrefix("/admin/tasks/") == true)
        }
    }

    /// Run ids linked from a task-runs page, in order.
    static func runIDs(in html: String) -> [String] {
        html.components(separatedBy: "<a href=\"/admin/tasks/").dropFirst().compactMap { part in
            part.split(separator: "\"").first.map(String.init)
        }
    }

    static func nextLink(in html: String) -> String? {
        guard let range = html.range(of: "rel=\"next\"") else { return nil }
        let before = html[..<range.lowerBound]
        guard let start = before.range(of: "href=\"", options: .backwards) else { return nil }
        let link = before[start.upperBound...].prefix { $0 != "\"" }
        return String(link).replacingOccurrences(of: "&amp;", with: "&")
    }
}
