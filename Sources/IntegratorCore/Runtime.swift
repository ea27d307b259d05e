// The assembled engine of one process: settings, database, plugins and the services built on them.
import Foundation
import Logging

/// Everything the API, the CLI and (later) the beat and workers share. Build one per process.
public struct Runtime: Sendable {
    public let settings: Settings
    public let database: Database
    public let registry: PluginRegistry
    public let clock: any TimeSource
    public let logger: Logger
    public let credentials: CredentialsService
    public let integrations: IntegrationsService
    public let users: UsersService
    public let broker: any Broker
    public let runs: TaskRunStore
    public let tasks: TasksService
    /// Outbound HTTP for plugins: pooled connections, the SSRF guard, rate budgets. Shut down by ``shutdown()``.
    public let outbound: OutboundHTTP
    /// Runs and enqueues provider fetches (the `integration.fetch` and `integration.fetch_all` tasks).
    public let fetches: FetchService
    /// What fetches stored: records, change events, fetch state.
    public let records: RecordsService
    /// Wakes the beat when schedules or timers change.
    public let wakeup: BeatWakeup
    /// Records runs and publishes them in one transaction (the beat's way to publish).
    public let dispatcher: TaskDispatcher
    public let timers: TimerStore
    public let schedules: SchedulesService

    /// - Parameters:
    ///   - settings: must carry secret keys; the CLI refuses to build a runtime without them.
    ///   - passwordHasher: bcrypt cost; tests lower it to keep user creation fast.
    ///   - outboundOptions: defaults to the settings' allowed ranges and the system clock.
    public init(
        settings: Settings, database: Database, registry: PluginRegistry, clock: any TimeSource = SystemTimeSource(),
        logger: Logger, passwordHasher: PasswordHasher = PasswordHasher(), outboundOptions: OutboundHTTP.Options? = nil
    ) async throws {
        guard let keys = settings.secretKeys else {
            throw ConfigurationError(variable: "INTEGRATOR_SECRET_KEY", expected: "base64 of 32 bytes (it is not set)")
        }
        self.settings = settings
        self.database = database
        self.clock = clock
        self.logger = logger
        let credentialStore = CredentialStore(database: database)
        self.outbound = OutboundHTTP(
            options: outboundOptions ?? OutboundHTTP.Options(allowedRanges: settings.outboundAllowedRanges), logger: logger)
        self.credentials = CredentialsService(
            store: credentialStore, registry: registry, box: SecretBox(keys: keys), clock: clock, outbound: outbound)
        self.integrations = IntegrationsService(
            store: IntegrationStore(database: database), credentials: credentialStore, registry: registry, clock: clock)
        self.users = UsersService(
            store: UserStore(database: database), hasher: passwordHasher,
            tokens: await TokenService(keyRing: keys, clock: clock), apiToken: settings.apiToken, clock: clock)
        let runs = TaskRunStore(database: database)
        switch settings.broker {
        case .sql:
            self.broker = SQLBroker(database: database, clock: clock)
        case .amqp(let url):
            self.broker = try RabbitMQBroker(url: url, runs: runs, clock: clock, logger: logger)
        }
        self.runs = runs
        // The engine's fetch tasks need this runtime's services, so they join the plugins' registry here, and
        // every process that runs workers finds them.
        let fetches = FetchService(
            database: database, integrations: integrations, credentials: credentials, registry: registry, runs: runs,
            tasks: TasksService(broker: broker, runs: runs, registry: registry, clock: clock), outbound: outbound, clock: clock)
        let engineRegistry = try PluginRegistry(registry.plugins.filter { $0.id != Plugin.fetchPipelineID } + [.fetchPipeline(fetches)])
        self.registry = engineRegistry
        self.fetches = fetches
        self.records = RecordsService(database: database, integrations: integrations)
        self.tasks = TasksService(broker: broker, runs: runs, registry: engineRegistry, clock: clock)
        let wakeup = BeatWakeup()
        let dispatcher = TaskDispatcher(database: database, broker: broker, runs: runs)
        self.wakeup = wakeup
        self.dispatcher = dispatcher
        self.timers = TimerStore(database: database, wakeup: wakeup)
        self.schedules = SchedulesService(
            store: ScheduleStore(database: database), integrations: IntegrationStore(database: database),
            dispatcher: dispatcher, registry: engineRegistry, wakeup: wakeup, clock: clock)
    }
}

extension Runtime {
    /// Releases what the runtime holds open besides the database (outbound connections). Call once, at the end.
    public func shutdown() async {
        await outbound.shutdown()
    }

    /// A beat on this runtime's database and broker.
    public func makeBeat(
        _ options: BeatOptions = BeatOptions(), identity: String? = nil, onPublished: BeatPublishObserver? = nil
    ) -> Beat {
        Beat(
            database: database, schedules: ScheduleStore(database: database), timers: timers, dispatcher: dispatcher,
            wakeup: wakeup, clock: clock, logger: logger, options: options, identity: identity, onPublished: onPublished)
    }

    /// A worker on this runtime's broker, store and plugins.
    /// - Parameter onRecorded: told the final states of the tasks whose outcomes were just recorded (benchmarks count
    ///   them instead of polling the database).
    public func makeWorker(_ options: WorkerOptions, id: String? = nil, onRecorded: WorkerOutcomeObserver? = nil) -> Worker {
        Worker(
            options: options, broker: broker, runs: runs, registry: registry, timers: timers, clock: clock, logger: logger, id: id,
            onRecorded: onRecorded)
    }
}
