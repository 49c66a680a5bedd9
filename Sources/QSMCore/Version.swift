/// The release of the engine and its tools, printed by `qsm-node --version` and
/// `qsm-bench --version`.
package enum QSMVersion {
    package static let string = "0.2.0"
}
