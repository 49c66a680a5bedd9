#if canImport(Glibc)
import Glibc
#endif

/// Closes a descriptor, ignoring EINTR as Linux requires (the descriptor is gone either way).
package func closeDescriptor(_ descriptor: Int32) {
    _ = Glibc.close(descriptor)
}
