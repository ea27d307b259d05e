// Integrations through the real HTTP API: provider and credentials rules, config validation, defaults, paging, filters.
import Foundation
import IntegratorCore
import Testing

@Suite("Integrations API")
struct IntegrationsAPITests {
    @Test("a demo integration gets config defaults and sensible queue and priority")
    func createDemo() async throws {
        try await TestApp.run { app in
            let created = try await app.call(.post, "/api/v1/integrations", body: ["name": "demo", "provider": "demo"])
            #expect(created.status == .created)
            #expect(created.json["config"] == ["records": 100, "stream": "items", "change_fraction": 0.1])
            #expect(created.json["queue"] == "default")
            #expect(created.json["priority"] == 5)
            #expect(created.json["active"] == true)
            #expect(created.json["credentials"] == .null)

            let id = try #require(created.json["id"]?.stringValue)
            let patched = try await app.call(
                .patch, "/api/v1/integrations/\(id)", body: ["config": ["records": 7], "priority": 9, "queue": "high", "active": false])
            #expect(patched.status == .ok)
            #expect(patched.json["config"]?["records"] == 7)
            #expect(patched.json["config"]?["stream"] == "items")
            #expect(patched.json["priority"] == 9)
            #expect(patched.json["queue"] == "high")
            #expect(patched.json["active"] == false)
            #expect(patched.json["max_attempts"] == .null)
            let override = try await app.call(.patch, "/api/v1/integrations/\(id)", body: ["max_attempts": 7])
            #expect(override.json["max_attempts"] == 7)
            #expect(try await app.call(.patch, "/api/v1/integrations/\(id)", body: ["max_attempts": 0]).errorFields == ["max_attempts"])
            let cleared = try await app.call(.patch, "/api/v1/integrations/\(id)", body: ["max_attempts": nil])
            #expect(cleared.json["max_attempts"] == .null)
            #expect(try await app.call(.get, "/api/v1/integrations/\(id)").json["config"] == patched.json["config"])
        }
    }

    @Test("provider and credentials must fit together")
    func credentialsRules() async throws {
        try await TestApp.run(extraPlugins: [.testing]) { app in
            let bearer = try await app.call(.post, "/api/v1/credentials", body: ["name": "b", "type": "http-bearer", "secret": ["token": "t"]])
            let bearerID = try #require(bearer.json["id"]?.stringValue)

            let wrongType = try await app.call(
                .post, "/api/v1/integrations",
                body: ["name": "x", "provider": "header-only", "credentials": .string(bearerID), "config": ["base_url": "https://a.example"]])
            #expect(wrongType.status == .badRequest)
            #expect(wrongType.errorFields == ["credentials"])
            #expect(wrongType.text.contains("http-header"))

            let missing = try await app.call(.post, "/api/v1/integrations", body: ["name": "x", "provider": "header-only", "config": ["base_url": "https://a.example"]])
            #expect(missing.errorFields == ["credentials"])

            let unknownCredentials = try await app.call(
                .post, "/api/v1/integrations",
                body: ["name": "x", "provider": "header-only", "credentials": .string(Identifier.make()), "config": ["base_url": "https://a.example"]])
            #expect(unknownCredentials.errorFields == ["credentials"])

            let notNeeded = try await app.call(.post, "/api/v1/integrations", body: ["name": "x", "provider": "demo", "credentials": .string(bearerID)])
            #expect(notNeeded.errorFields == ["credentials"])

            let badConfig = try await app.call(
                .post, "/api/v1/integrations",
                body: ["name": "x", "provider": "header-only", "config": ["base_url": "not a url", "streams": ["events", "refunds"]]])
            #expect(Set(badConfig.errorFields) == ["credentials", "config.base_url", "config.streams[1]"])

            let unknownProvider = try await app.call(.post, "/api/v1/integrations", body: ["name": "x", "provider": "salesforce", "priority": 10])
            #expect(Set(unknownProvider.errorFields) == ["provider", "priority"])

            let listed = try await app.call(.get, "/api/v1/integrations")
            #expect(listed.json["items"] == [])
        }
    }

    @Test("lists page with limit and cursor, and filter")
    func paging() async throws {
        try await TestApp.run { app in
            var ids: [String] = []
            for index in 0..<7 {
                let created = try await app.call(
                    .post, "/api/v1/integrations",
                    body: ["name": .string("demo-\(index)"), "provider": "demo", "queue": index % 2 == 0 ? "even" : "odd"])
                ids.append(try #require(created.json["id"]?.stringValue))
            }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let path = "/api/v1/integrations?limit=3" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await app.call(.get, path)
                #expect(page.status == .ok)
                seen += page.json["items"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
                cursor = page.json["next_cursor"]?.stringValue
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == ids)

            let odd = try await app.call(.get, "/api/v1/integrations?queue=odd")
            #expect(odd.json["items"]?.arrayValue?.count == 3)
            let demo = try await app.call(.get, "/api/v1/integrations?provider=demo&active=true")
            #expect(demo.json["items"]?.arrayValue?.count == 7)

            #expect(try await app.call(.get, "/api/v1/integrations?limit=501").errorFields == ["limit"])
            #expect(try await app.call(.get, "/api/v1/integrations?limit=0").errorFields == ["limit"])
            #expect(try await app.call(.get, "/api/v1/integrations?cursor=zzz").errorFields == ["cursor"])
            #expect(try await app.call(.get, "/api/v1/integrations?active=maybe").errorFields == ["active"])
        }
    }

    @Test("names are unique")
    func uniqueNames() async throws {
        try await TestApp.run { app in
            #expect(try await app.call(.post, "/api/v1/integrations", body: ["name": "same", "provider": "demo"]).status == .created)
            let again = try await app.call(.post, "/api/v1/integrations", body: ["name": "same", "provider": "demo"])
            #expect(again.status == .conflict)
            #expect(again.errorCode == "conflict")
        }
    }
}
