if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now apg-biometric-hub.service || :
fi
