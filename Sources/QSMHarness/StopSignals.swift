import QSMCore
import CQSMLinux

/// A descriptor that becomes readable when the process receives SIGINT or SIGTERM, so a
/// core can treat "stop" as an ordinary event. SIGPIPE is ignored from then on.
public enum StopSignals {
    public static func descriptor() throws(SystemError) -> Int32 {
        try systemCall("eventfd(stop signals)") { cqsm_stop_signal_eventfd() }
    }
}
