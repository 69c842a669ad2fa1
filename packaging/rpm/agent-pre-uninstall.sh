# apg-biometric-agent (rpm): stop and disable on erase ($1 = 0), not on upgrade.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now apg-biometric-agent.service || :
fi
