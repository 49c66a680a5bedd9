import QSMCore
import QSMHarness

/// Turns SIGINT/SIGTERM into an event on the core: `action` runs on the core thread.
final class StopOnSignal: DescriptorHandler {
    private let descriptor: Int32
    private let action: (EventCore) -> Void

    init(core: EventCore, action: @escaping (EventCore) -> Void) throws {
        descriptor = try StopSignals.descriptor()
        self.action = action
        _ = try core.registerDescriptor(descriptor, medium: .local, traffic: .control, readable: true,
                                        writable: false, handler: self)
    }

    func descriptorReadable(_ registration: RegistrationID, core: EventCore) {
        core.unregister(registration)
        action(core)
    }

    func descriptorWritable(_ registration: RegistrationID, core: EventCore) {}
}
