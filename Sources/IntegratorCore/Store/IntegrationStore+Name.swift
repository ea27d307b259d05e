// Finding an integration by its unique name (the command line accepts names as well as ids).
import SQLKit

extension IntegrationStore {
    public func find(name: String) async throws -> Integration? {
        try await database.withSQL { sql in
            try await sql.select().column("*").from("integrations").where("name", .equal, name).first().map(Self.decode)
        }
    }
}
