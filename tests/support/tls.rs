//! Throwaway TLS for tests: a CA and a server certificate for 127.0.0.1 made at test time, and
//! a TLS terminator that forwards to a plain-TCP broker. (tansu 0.6.0 accepts `--cert` and
//! `--key` but serves every connection as plain TCP: its `TlsAcceptor` is built and never
//! used, tansu-broker-0.6.0/src/broker.rs line 268.) The client side is kafkad's real
//! librdkafka/OpenSSL TLS, verifying the chain and the host name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::net::{TcpListener, TcpStream};
use tokio_openssl::SslStream;

/// PEM files of a CA and of a server certificate it signed.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("key")
}

fn certificate(
    common_name: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", common_name).expect("CN");
    let name = name.build();
    let mut builder = X509::builder().expect("builder");
    builder.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("bn");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    builder
        .set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    builder.set_subject_name(&name).expect("subject");
    builder.set_pubkey(key).expect("pubkey");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nbf");
    builder
        .set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("naf");
    match issuer {
        None => {
            builder.set_issuer_name(&name).expect("issuer");
            builder
                .append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                .expect("ext");
            builder
                .append_extension(
                    KeyUsage::new()
                        .critical()
                        .key_cert_sign()
                        .crl_sign()
                        .build()
                        .expect("ku"),
                )
                .expect("ext");
            builder.sign(key, MessageDigest::sha256()).expect("sign");
        }
        Some((ca, ca_key)) => {
            builder.set_issuer_name(ca.subject_name()).expect("issuer");
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .dns("localhost")
                .build(&builder.x509v3_context(Some(ca), None))
                .expect("san");
            builder.append_extension(san).expect("ext");
            builder.sign(ca_key, MessageDigest::sha256()).expect("sign");
        }
    }
    builder.build()
}

fn write(path: &Path, pem: Vec<u8>) {
    std::fs::write(path, pem).expect("write PEM");
}

impl Pki {
    /// A fresh CA named `ca_name` and a server certificate for 127.0.0.1 signed by it.
    pub fn new(ca_name: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let (ca_key, server_key) = (key(), key());
        let ca = certificate(ca_name, &ca_key, None);
        let server = certificate("127.0.0.1", &server_key, Some((&ca, &ca_key)));
        let pki = Pki {
            ca: dir.path().join("ca.pem"),
            server_cert: dir.path().join("server.pem"),
            server_key: dir.path().join("server.key"),
            _dir: dir,
        };
        write(&pki.ca, ca.to_pem().expect("pem"));
        write(&pki.server_cert, server.to_pem().expect("pem"));
        write(
            &pki.server_key,
            server_key.private_key_to_pem_pkcs8().expect("pem"),
        );
        pki
    }
}

/// Terminates TLS on `listener` with the PKI's server certificate and forwards each
/// connection to `upstream`; runs until the runtime ends.
pub async fn terminate_tls(listener: TcpListener, pki: &Pki, upstream: String) -> SocketAddr {
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
    acceptor
        .set_certificate_chain_file(&pki.server_cert)
        .expect("cert");
    acceptor
        .set_private_key_file(&pki.server_key, openssl::ssl::SslFiletype::PEM)
        .expect("key");
    let acceptor = acceptor.build();
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(ssl) = Ssl::new(acceptor.context()) else {
                continue;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = SslStream::new(ssl, client) else {
                    return;
                };
                // A client that rejects our certificate ends here: exactly what the
                // untrusted-CA test wants to see from the client side.
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                if let Ok(mut broker) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                }
            });
        }
    });
    addr
}
