/// The release version of every Tributary program: the agent reports it in its status, a relay
/// as "relay VERSION", and `scripts/make-deb.sh` reads it from this line for the packages'
/// version. Change it here only.
public enum TributaryVersion {
    public static let current = "0.2.0"
}
