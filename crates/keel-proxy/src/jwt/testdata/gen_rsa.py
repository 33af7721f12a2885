# Generates crates/keel-proxy/src/jwt/testdata/rsa.json: a throwaway RSA-2048 public key as a
# JWKS and tokens signed offline with openssl (ring cannot generate RSA keys). The private key
# is deleted afterwards.
import base64, json, subprocess, re, os
def b64u(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
subprocess.run(['openssl','genpkey','-algorithm','RSA','-pkeyopt','rsa_keygen_bits:2048','-out','key.pem'],check=True,capture_output=True)
text=subprocess.run(['openssl','pkey','-in','key.pem','-text','-noout'],check=True,capture_output=True,text=True).stdout
m=re.search(r'modulus:\n((?:\s+[0-9a-f:]+\n)+)',text)
n=bytes.fromhex(re.sub(r'[\s:]','',m.group(1)))
while n[0]==0: n=n[1:]
jwks={"keys":[{"kty":"RSA","kid":"keel-test-rsa","use":"sig","n":b64u(n),"e":"AQAB"}]}
payload={"iss":"rsa.keel.test","sub":"alice","aud":"keel","iat":1700000000,"exp":4102444800,"groups":["admins"]}
tokens={}
for alg,dg,pss in [("RS256","sha256",False),("RS384","sha384",False),("RS512","sha512",False),("PS256","sha256",True),("PS384","sha384",True),("PS512","sha512",True)]:
    h=b64u(json.dumps({"alg":alg,"typ":"JWT","kid":"keel-test-rsa"},separators=(',',':')).encode())
    p=b64u(json.dumps(payload,separators=(',',':')).encode())
    si=(h+'.'+p).encode()
    open('si','wb').write(si)
    cmd=['openssl','dgst','-'+dg,'-sign','key.pem']
    if pss: cmd+=['-sigopt','rsa_padding_mode:pss','-sigopt','rsa_pss_saltlen:digest']
    sig=subprocess.run(cmd+['si'],check=True,capture_output=True).stdout
    tokens[alg]=h+'.'+p+'.'+b64u(sig)
os.remove('key.pem')
out={"_comment":"Throwaway RSA-2048 test key (private half deleted after signing) and tokens signed with openssl 3 for Keel's JWT tests; regenerate with gen_rsa.py beside it. Payload: iss rsa.keel.test, sub alice, aud keel, exp 2100-01-01.","jwks":json.dumps(jwks,separators=(',',':')),"payload":payload,"tokens":tokens}
open('/work/wt-jwt/crates/keel-proxy/src/jwt/testdata/rsa.json','w').write(json.dumps(out,indent=2)+"\n")
