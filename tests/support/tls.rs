//! Throwaway TLS for tests: a CA, and server and client certificates it signs, made at test
//! time as PEM files. The broker's side reads them as PEM keystores; kafkad's side is its real
//! librdkafka/OpenSSL TLS, verifying the chain and the host name.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509NameBuilder, X509};

/// A CA whose certificate and key live in `dir`; it signs the certificates made with it.
pub struct Pki {
    dir: PathBuf,
    /// The CA certificate (PEM): what clients and brokers trust.
    pub ca: PathBuf,
    ca_cert: X509,
    ca_key: PKey<Private>,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    /// The certificate followed by the CA's (a chain).
    pub cert: PathBuf,
    /// The private key (PKCS#8), encrypted when a password was given.
    pub key: PathBuf,
    /// Key, certificate and CA in one file: a PEM keystore (`ssl.keystore.type=PEM`).
    pub keystore: PathBuf,
}

/// Which end of a connection a certificate is for.
pub enum Usage<'a> {
    /// A server certificate valid for these IP addresses only (no DNS names).
    Server { ips: &'a [&'a str] },
    /// A client certificate.
    Client,
}

fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("RSA key")).expect("key")
}

fn name(common_name: &str) -> X509Name {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", common_name).expect("CN");
    name.build()
}

fn builder(common_name: &str, key: &PKey<Private>) -> openssl::x509::X509Builder {
    let mut builder = X509::builder().expect("builder");
    builder.set_version(2).expect("v3");
    let mut serial = BigNum::new().expect("bn");
    serial
        .rand(64, MsbOption::MAYBE_ZERO, false)
        .expect("serial");
    builder
        .set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    builder
        .set_subject_name(&name(common_name))
        .expect("subject");
    builder.set_pubkey(key).expect("pubkey");
    builder
        .set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nbf");
    builder
        .set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("naf");
    builder
}

fn write(path: &Path, pem: &[u8]) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl Pki {
    /// A fresh CA named `ca_name`, its files in `dir` (created if missing).
    pub fn new(dir: &Path, ca_name: &str) -> Self {
        std::fs::create_dir_all(dir).expect("PKI dir");
        let ca_key = key();
        let mut ca = builder(ca_name, &ca_key);
        ca.set_issuer_name(&name(ca_name)).expect("issuer");
        ca.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("ext");
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("ku"),
        )
        .expect("ext");
        ca.sign(&ca_key, MessageDigest::sha256()).expect("sign");
        let ca_cert = ca.build();
        let path = dir.join(format!("{}.ca.pem", file_name(ca_name)));
        write(&path, &ca_cert.to_pem().expect("pem"));
        Pki {
            dir: dir.to_owned(),
            ca: path,
            ca_cert,
            ca_key,
        }
    }

    /// A certificate for `common_name` signed by this CA; its key encrypted with
    /// `key_password` when given (the keystore file always holds the key unencrypted).
    pub fn issue(&self, common_name: &str, usage: Usage<'_>, key_password: Option<&str>) -> Issued {
        let key = key();
        let mut cert = builder(common_name, &key);
        cert.set_issuer_name(self.ca_cert.subject_name())
            .expect("issuer");
        match usage {
            Usage::Server { ips } => {
                let mut san = SubjectAlternativeName::new();
                for ip in ips {
                    san.ip(ip);
                }
                let san = san
                    .build(&cert.x509v3_context(Some(&self.ca_cert), None))
                    .expect("san");
                cert.append_extension(san).expect("ext");
                cert.append_extension(ExtendedKeyUsage::new().server_auth().build().expect("eku"))
                    .expect("ext");
            }
            Usage::Client => {
                cert.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku"))
                    .expect("ext");
            }
        }
        cert.sign(&self.ca_key, MessageDigest::sha256())
            .expect("sign");
        let cert = cert.build();

        let stem = file_name(common_name);
        let mut chain = cert.to_pem().expect("pem");
        chain.extend(self.ca_cert.to_pem().expect("pem"));
        let plain_key = key.private_key_to_pem_pkcs8().expect("pem");
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
            keystore: self.dir.join(format!("{stem}.keystore.pem")),
        };
        write(&issued.cert, &chain);
        match key_password {
            Some(password) => write(
                &issued.key,
                &key.private_key_to_pem_pkcs8_passphrase(
                    Cipher::aes_256_cbc(),
                    password.as_bytes(),
                )
                .expect("encrypted pem"),
            ),
            None => write(&issued.key, &plain_key),
        }
        let mut keystore = plain_key;
        keystore.extend(&chain);
        write(&issued.keystore, &keystore);
        issued
    }
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
