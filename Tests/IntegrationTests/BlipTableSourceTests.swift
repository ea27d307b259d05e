// The business-table source on a real PostgreSQL table (POSTGRES_TEST_URL): rows claimed by two workers at once and
// sent once each, statuses written back, a crash that leaves rows pending not sending twice, and a mapping checked
// against the real table.
import Foundation
import IntegratorCore
import Logging
import SQLKit
import Testing

@testable import Plugins

@Suite("BLiP business-table source")
struct BlipTableSourceTests {
    /// A table named for this test in the test PostgreSQL database, shaped like the seed's (CD_STATUS 1 = pending),
    /// with `rows` pending notifications; dropped afterwards.
    static func withBusinessTable<T: Sendable>(
        rows: Int, _ body: @Sendable (_ url: String, _ table: String, _ business: Database) async throws -> T
    ) async throws -> T? {
        guard let url = ProcessInfo.processInfo.environment["POSTGRES_TEST_URL"] else { return nil }
        let table = "notificacoes_" + UUID().uuidString.prefix(8).lowercased()
        return try await Database.withDatabase(try DatabaseLocation(parsing: url, variable: "POSTGRES_TEST_URL"), logger: TestDatabase.logger) { business in
            try await business.withSQL { sql in
                try await sql.raw(
                    """
                    CREATE TABLE \(unsafeRaw: table) ("ID_NOTIFICACAO" INTEGER PRIMARY KEY, "NR_TELEFONE" TEXT, "NM_CLIENTE" TEXT,
                        "NR_PEDIDO" INTEGER, "CD_STATUS" INTEGER NOT NULL)
                    """
                ).run()
                for chunk in Array(1...max(rows, 1)).chunks(of: 500) where rows > 0 {
                    let values = chunk.map { row -> SQLQueryString in
                        let phone = "(11) 9\(String(format: "%04d", row / 10_000))-\(String(format: "%04d", row % 10_000))"
                        return "(\(bind: row), \(bind: phone), \(bind: "Cliente \(row)"), \(bind: 1000 + row), 1)"
                    }
                    try await sql.raw("INSERT INTO \(unsafeRaw: table) VALUES \(values.joined(separator: ", "))").run()
                }
            }
            do {
                let value = try await body(url, table, business)
                try await business.withSQL { try await $0.raw("DROP TABLE \(unsafeRaw: table)").run() }
                return value
            } catch {
                try? await business.withSQL { try await $0.raw("DROP TABLE \(unsafeRaw: table)").run() }
                throw error
            }
        }
    }

    static func statuses(_ business: Database, _ table: String) async throws -> [Int: Int] {
        try await business.withSQL { sql in
            try await sql.raw("SELECT \"CD_STATUS\" AS s, COUNT(*) AS n FROM \(unsafeRaw: table) GROUP BY \"CD_STATUS\"").all()
        }.reduce(into: [:]) { $0[try $1.decode(column: "s", as: Int.self)] = try $1.decode(column: "n", as: Int.self) }
    }

    /// `blip-database` credentials for the test PostgreSQL; their id.
    static func databaseCredentials(_ app: TestApp, _ url: String) async throws -> String {
        let created = try await app.call(.post, "/api/v1/credentials", body: ["name": "loja-db", "type": "blip-database", "secret": ["url": .string(url)]])
        #expect(!created.text.contains(url))
        return try #require(created.json["id"]?.stringValue, "\(created.text)")
    }

    static func config(_ databaseCredentials: String, _ table: String) -> JSONValue {
        [
            "source": "table", "database_credentials": .string(databaseCredentials), "table": .string(table), "id_column": "ID_NOTIFICACAO",
            "phone_column": "NR_TELEFONE", "status_column": "CD_STATUS", "parameter_columns": ["NM_CLIENTE", "NR_PEDIDO"],
            "template": "pedido_pronto", "namespace": "ns_loja", "batch_size": 1000,
        ]
    }

    @Test("two workers share a business table's pending rows: every row sent once, statuses written back")
    func twoWorkers() async throws {
        let fake = FakeBlip()
        fake.unknown("+5511900000007")
        let ran: Bool? = try await Self.withBusinessTable(rows: 400) { url, table, business in
            try await fake.run { baseURL in
                try await TestApp.run { app in
                    let databaseID = try await Self.databaseCredentials(app, url)
                    // A phone nobody can send to: that row fails with the reason, the others go on.
                    try await business.withSQL { sql in
                        try await sql.raw("UPDATE \(unsafeRaw: table) SET \"NR_TELEFONE\" = 'não informado' WHERE \"ID_NOTIFICACAO\" = 5").run()
                    }
                    let (_, integration) = try await BlipTests.setUp(app, fake, baseURL, config: Self.config(databaseID, table))
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<2 { group.addTask { try await BlipTests.run(app, integration) } }
                        try await group.waitForAll()
                    }
                    #expect(try await Self.statuses(business, table) == [2: 398, 3: 2])
                    #expect(fake.messages.count == 398, "each row posted once")
                    #expect(fake.messageIDs.count == 398)
                    let message = try #require(fake.messages.first { $0.body["to"] == "5511900000001@wa.gw.msging.net" })
                    #expect(
                        message.body["content"]?["template"]?["components"]?.arrayValue?.first?["parameters"]
                            == [["type": "text", "text": "Cliente 1"], ["type": "text", "text": "1001"]])
                    // The rows are in the outbox too, so GET shows them and status callbacks reach them.
                    let failed = try await app.call(.get, "/api/v1/notifications?status=failed").json["items"]?.arrayValue ?? []
                    #expect(Set(failed.compactMap { $0["external_id"]?.stringValue }) == ["table:\(integration):5", "table:\(integration):7"])
                    #expect(failed.contains { $0["last_error"]?.stringValue?.hasPrefix("the phone number may only hold digits") == true })
                    // Nothing pending: a third run sends nothing.
                    try await BlipTests.run(app, integration)
                    #expect(fake.messages.count == 398)
                }
            }
            return true
        }
        if ran == nil { print("POSTGRES_TEST_URL is not set; the business-table test did not run") }
    }

    @Test("a worker that dies after sending leaves the rows pending, and the next run does not send them again")
    func crash() async throws {
        let fake = FakeBlip()
        _ = try await Self.withBusinessTable(rows: 30) { url, table, business in
            try await fake.run { baseURL in
                try await TestApp.run { app in
                    let databaseID = try await Self.databaseCredentials(app, url)
                    let (credentialsID, integration) = try await BlipTests.setUp(app, fake, baseURL, config: Self.config(databaseID, table))
                    let dying = try await BlipTests.dyingRun(app, credentialsID: credentialsID, integrationID: integration)
                    let mapping = try BlipTableMapping(config: Self.config(databaseID, table).objectValue ?? [:])
                    await #expect(throws: BlipTests.WorkerDied.self) { try await dying.sendTable(mapping, databaseCredentialsID: databaseID) }
                    #expect(try await Self.statuses(business, table) == [1: 30], "the business transaction rolled back")
                    #expect(fake.messageIDs.count == 30)
                    app.clock.advance(by: 601)
                    try await BlipTests.run(app, integration)
                    #expect(try await Self.statuses(business, table) == [2: 30])
                    #expect(fake.messageIDs.count == 30, "sent again with the same ids: still 30 messages")
                }
            }
        }
    }

    @Test("a mapping is checked against the real table when saved (400 naming the field, nothing stored) and when run")
    func wrongMapping() async throws {
        let fake = FakeBlip()
        _ = try await Self.withBusinessTable(rows: 1) { url, table, business in
            try await fake.run { baseURL in
                try await TestApp.run { app in
                    let databaseID = try await Self.databaseCredentials(app, url)
                    let blip = try await app.call(
                        .post, "/api/v1/credentials",
                        body: ["name": "blip", "type": "blip", "public": ["base_url": .string(baseURL)], "secret": ["key": .string(fake.key)]])
                    let blipID = try #require(blip.json["id"]?.stringValue)
                    guard case .object(let good) = Self.config(databaseID, table) else { return }
                    func create(_ config: [String: JSONValue]) async throws -> JSONResponse {
                        try await app.call(
                            .post, "/api/v1/integrations",
                            body: ["name": "whatsapp", "provider": "blip-notifications", "credentials": .string(blipID), "config": .object(config)])
                    }
                    var wrong = good
                    wrong["phone_column"] = "NR_CELULAR"
                    wrong["parameter_columns"] = ["NM_CLIENTE", "DS_EXTRA"]
                    let refused = try await create(wrong)
                    #expect(refused.status == .badRequest)
                    #expect(refused.errorFields == ["config.phone_column", "config.parameter_columns[1]"])
                    #expect(refused.text.contains("the table has no column 'NR_CELULAR'") && !refused.text.contains(url))
                    wrong = good
                    wrong["database_credentials"] = .string(blipID)
                    #expect(try await create(wrong).errorFields == ["config.database_credentials"])
                    #expect(try await app.call(.get, "/api/v1/integrations").json["items"] == [], "nothing stored")

                    let created = try await create(good)
                    #expect(created.status == .created, "\(created.text)")
                    let integration = try #require(created.json["id"]?.stringValue)
                    let patched = try await app.call(.patch, "/api/v1/integrations/\(integration)", body: ["config": ["table": "tabela_que_nao_existe"]])
                    #expect(patched.errorFields == ["config.table"])
                    #expect(try await app.call(.get, "/api/v1/integrations/\(integration)").json["config"]?["table"] == .string(table))

                    // The table changed after the save: the run fails for good, naming the field, and sends nothing.
                    try await business.withSQL { try await $0.raw("ALTER TABLE \(unsafeRaw: table) DROP COLUMN \"NM_CLIENTE\"").run() }
                    let failure = await #expect(throws: FetchFailure.self) { try await BlipTests.run(app, integration) }
                    #expect(failure?.message.contains("config.parameter_columns[0]: the table has no column 'NM_CLIENTE'") == true)
                    #expect(fake.requests.isEmpty)
                    #expect(try await Self.statuses(business, table) == [1: 1])
                }
            }
        }
    }
}
