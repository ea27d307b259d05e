// Liveness and readiness, without authentication, for load balancers and orchestrators.
import Hummingbird

extension Routes {
    func addHealth(to router: DocumentedRoutes) {
        router.get("health", access: .open, .health) { _, _ in
            await healthResponse(checkMigrations: false)
        }
        router.get("ready", access: .open, .ready) { _, _ in
            await healthResponse(checkMigrations: true)
        }
    }

    /// 200 `{"status":"healthy","database":"connected"}`, or 503 naming what is down.
    private func healthResponse(checkMigrations: Bool) async -> Response {
        guard await runtime.database.isReachable() else {
            return JSONValue.object(["status": "unhealthy", "database": "unreachable"]).response(status: .serviceUnavailable)
        }
        if checkMigrations {
            let applied = (try? await Migrator().appliedVersions(runtime.database)) ?? []
            let wanted = Migration.all.map(\.version)
            if !Set(wanted).isSubset(of: applied) {
                return JSONValue.object(["status": "unhealthy", "database": "connected", "migrations": "pending"])
                    .response(status: .serviceUnavailable)
            }
            // The API itself is ready without a beat, so the status stays 200; the body says loudly what is missing.
            var body: [String: JSONValue] = ["status": "ready", "database": "connected", "migrations": "applied"]
            do {
                if let silence = try await BeatStatusStore(database: runtime.database).silence(at: runtime.clock.now()) {
                    body["beat"] = "missing"
                    body["warnings"] = [.string(silence)]
                } else {
                    body["beat"] = "leading"
                }
            } catch {
                body["beat"] = "unknown"
            }
            return JSONValue.object(body).response()
        }
        return JSONValue.object(["status": "healthy", "database": "connected"]).response()
    }
}
