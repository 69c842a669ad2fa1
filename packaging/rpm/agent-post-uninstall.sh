# apg-biometric-agent (rpm): rpm has no purge; state is kept on erase and says so.
if [ "$1" -eq 0 ]; then
    [ -d /run/systemd/system ] && systemctl daemon-reload || :
    echo "apg-biometric-agent: kept /var/lib/apg-biometric and /etc/apg-biometric (templates, audit log, master key)."
    echo "  Remove them by hand to erase every template: rm -rf /var/lib/apg-biometric /etc/apg-biometric"
fi
