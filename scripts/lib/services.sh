# Starts the local PostgreSQL (127.0.0.1:5432, trust auth) and Mosquitto (127.0.0.1:1883) that the
# sync and hub tests use, installing them first on a fresh machine.
# shellcheck source=scripts/lib/packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/packages.sh"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
    echo "$2 did not come up on 127.0.0.1:$1" >&2
    return 1
}

ensure_postgres() {
    ensure_packages postgresql postgresql-client
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        local version
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        local hba="/etc/postgresql/$version/main/pg_hba.conf"
        # Tests connect as postgres over TCP without a password, as on the CI machines.
        if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
            sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
        fi
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_port 5432 PostgreSQL
    fi
}

ensure_mosquitto() {
    ensure_packages mosquitto mosquitto-clients
    if ! port_open 1883; then
        mosquitto -d -c /etc/mosquitto/mosquitto.conf
        wait_port 1883 Mosquitto
    fi
}
