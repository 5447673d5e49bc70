# A throw-away certificate authority and the boot server's certificate, for the broker's HTTPS
# in nix/forgejo-boot-test.nix (the runner machine trusts ca.crt). Test only: the private key is
# in the world-readable Nix store. tests/flake-eval.test.ts runs this script with Debian's
# openssl and checks the chain and the name. (openssl req/x509 flags: OpenSSL 3 manual pages,
# from memory; the test proves them on OpenSSL 3.0.)
{ pkgs }:
pkgs.runCommand "forgejo-boot-test-pki" { nativeBuildInputs = [ pkgs.openssl ]; } ''
  mkdir -p "$out"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj /CN=runner-images-test-ca -keyout ca.key -out "$out/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=bootserver \
    -keyout "$out/bootserver.key" -out bootserver.csr 2>/dev/null
  printf 'subjectAltName=DNS:bootserver\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in bootserver.csr -CA "$out/ca.crt" -CAkey ca.key -CAcreateserial -days 3650 \
    -extfile server.ext -out "$out/bootserver.crt" 2>/dev/null
''
