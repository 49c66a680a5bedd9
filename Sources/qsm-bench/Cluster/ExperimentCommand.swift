#if canImport(Glibc)
import Glibc
#endif
import QSMCore
import QSMHarness

/// `qsm-bench experiment NAME`: sweeps of cluster runs reproducing the seed's figures,
/// each written as CSV and SVG and printed as a table.
enum ExperimentCommand {
    static let usage = """
        usage: qsm-bench experiment NAME [flags]

        Runs a series of cluster runs (see qsm-bench run --help) inside a private network
        namespace (root needed), prints a table, and writes NAME*.csv and NAME*.svg into
        the output directory. Every run checks delivery (all, in order, once); a run that
        loses anything is marked in the table and the command exits with status 3.

        experiments:
          receivers      throughput vs receivers (1, 2, 4, 8, 16) with 1 and 2 senders,
                         each against the raw limit measured in the same run (Fig. 4.18)
          groups         throughput, sender memory and token round trip vs the number of
                         groups, 1 to 8192, all receivers in all groups, round-robin
                         publishing (Fig. 4.43-4.46)
          latency        latency percentiles vs send rate and message size (Fig. 4.41)
          perturbations  throughput over time when receiver 0 sleeps, loses packets,
                         freezes, crashes, or receivers churn; time to recover, and
                         proof that nothing was lost (Fig. 4.31-4.36, 4.61-4.63)
          all            all of the above
          small          100-byte and 1000-byte messages: the engine against the raw
                         limit with one message per datagram and with the engine's own
                         packing (bundles)
          targets        the data path's targets, each measured three times, runs
                         interleaved: ratio to raw with the same techniques (4 receivers
                         >= 0.9, 8 >= 0.85), 100-byte messages >= 5x raw one per
                         datagram, heap allocations <= 0.05 per message at sender and
                         receivers, CPU per delivered message <= 1.3x the raw limit's
                         (4 receivers), p99 latency at 10,000 msg/s <= 150 us, 8192 groups
                         >= 95% of 1, sender RSS < 32 MB; a table says which are met
                         (about 15 minutes at --seconds 10)

        flags:
          --out DIR      output directory (default: bench/results)
          --seconds S    sending time per run, up to an hour: 10, 2500ms, 1m (default 5;
                         perturbation runs take at least 12, the freeze run 20)
          --quick        fewer points per sweep
          -h, --help     show this help
        """

    struct Settings {
        var output = "bench/results"
        var seconds = 5.0
        var quick = false
    }

    static func main(_ arguments: [String]) -> Never {
        var settings = Settings()
        var names: [String] = []
        do throws(ConfigurationError) {
            names = Array(arguments.prefix { !$0.hasPrefix("-") })
            let flags = try CommandLineFlags(Array(arguments.dropFirst(names.count)), valued: ["--out", "--seconds"],
                                             switches: ["--quick", "-h", "--help"])
            if flags.has("-h") || flags.has("--help") {
                print(usage)
                exit(0)
            }
            guard !names.isEmpty else { throw ConfigurationError("name an experiment: receivers, groups, latency, perturbations, small, all or targets (--help tells what each runs)") }
            if let out = try flags.value("--out") { settings.output = out }
            // The same spellings as `run --seconds` (2.5, 2500ms, 1m); each run of an
            // experiment is bounded to an hour, since an experiment makes dozens.
            let seconds = try flags.duration("--seconds", in: .milliseconds(1)...(.seconds(3600)), default: .seconds(5))
            settings.seconds = Double(seconds.components.seconds) + Double(seconds.components.attoseconds) / 1e18
            settings.quick = flags.has("--quick")
            let known = ["receivers", "groups", "latency", "perturbations", "all", "targets", "small"]
            for name in names where !known.contains(name) {
                throw ConfigurationError("unknown experiment '\(name)' (receivers, groups, latency, perturbations, small, all, targets)")
            }
        } catch {
            fail(error.message)
        }
        if names.contains("all") { names = ["receivers", "groups", "latency", "perturbations"] }
        BenchNamespace.enter()
        var healthy = true
        do {
            let files = try OutputFiles(directory: settings.output)
            for name in names {
                var experiment = Experiment(settings: settings, files: files)
                switch name {
                case "receivers": try experiment.receivers()
                case "groups": try experiment.groups()
                case "latency": try experiment.latency()
                case "targets": try experiment.targets()
                case "small": try experiment.small()
                default: try experiment.perturbations()
                }
                healthy = healthy && experiment.allDelivered
            }
        } catch {
            benchLog("qsm-bench experiment: \(error)")
            exit(1)
        }
        exit(healthy ? 0 : 3)
    }
}
