package convert_test

import (
	"math/rand"
	"testing"

	mcfgv1 "github.com/openshift/api/machineconfiguration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/dump"
	"sigs.k8s.io/randfill"

	"github.com/mosb-dev/mosb/api/convert"
	mosbv1 "github.com/mosb-dev/mosb/api/v1alpha1"
)

// filler makes random objects of either version, with every enum field one of its values (the
// CRDs refuse any other, so no stored object has one).
func filler(seed int64) *randfill.Filler {
	alphaArches := []mosbv1.ContainerfileArch{"", mosbv1.ArchAMD64, mosbv1.ArchX86_64, mosbv1.ArchARM64, mosbv1.ArchAArch64, mosbv1.ArchPPC64LE, mosbv1.ArchS390X, mosbv1.NoArch}
	v1Arches := []mcfgv1.ContainerfileArch{"", mcfgv1.Amd64, mcfgv1.Arm64, mcfgv1.Ppc, mcfgv1.S390, mcfgv1.NoArch}
	return randfill.New().RandSource(rand.NewSource(seed)).NilChance(0.3).NumElements(0, 3).Funcs(
		func(a *mosbv1.ContainerfileArch, c randfill.Continue) { *a = alphaArches[c.Intn(len(alphaArches))] },
		func(a *mcfgv1.ContainerfileArch, c randfill.Continue) { *a = v1Arches[c.Intn(len(v1Arches))] },
		func(b *mosbv1.MachineOSImageBuilderType, c randfill.Continue) { *b = mosbv1.PodImageBuilder },
		func(b *mcfgv1.MachineOSImageBuilderType, c randfill.Continue) { *b = mcfgv1.JobBuilder },
		// Server-set times are second-precision; the rest of ObjectMeta is as random as any.
		func(t *metav1.Time, c randfill.Continue) { *t = metav1.Unix(c.Int63n(1<<32), 0) },
		// managedFields hold JSON.
		func(f *metav1.FieldsV1, c randfill.Continue) { f.Raw = []byte(`{"f:spec":{}}`) },
	)
}

const fuzzRounds = 2000

func TestMachineOSConfigSurvivesV1Alpha1ToV1AndBack(t *testing.T) {
	f := filler(1)
	for i := 0; i < fuzzRounds; i++ {
		in := &mosbv1.MachineOSConfig{}
		f.Fill(in)
		in.TypeMeta = metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSConfig"}
		v1, err := convert.MachineOSConfigToV1(in.DeepCopy())
		if err != nil {
			t.Fatalf("round %d: to v1: %v\n%s", i, err, dump.Pretty(in))
		}
		back, err := convert.MachineOSConfigFromV1Lossless(v1)
		if err != nil {
			t.Fatalf("round %d: back: %v\n%s", i, err, dump.Pretty(v1))
		}
		if !equality.Semantic.DeepEqual(in, back) {
			t.Fatalf("round %d: v1alpha1 -> v1 -> v1alpha1 changed the object:\n%s", i, diff(in, back))
		}
	}
}

func TestMachineOSConfigSurvivesV1ToV1Alpha1AndBack(t *testing.T) {
	f := filler(2)
	for i := 0; i < fuzzRounds; i++ {
		in := &mcfgv1.MachineOSConfig{}
		f.Fill(in)
		in.TypeMeta = metav1.TypeMeta{APIVersion: mcfgv1.GroupVersion.String(), Kind: "MachineOSConfig"}
		alpha, err := convert.MachineOSConfigFromV1Lossless(in.DeepCopy())
		if err != nil {
			t.Fatalf("round %d: to v1alpha1: %v\n%s", i, err, dump.Pretty(in))
		}
		back, err := convert.MachineOSConfigToV1(alpha)
		if err != nil {
			t.Fatalf("round %d: back: %v\n%s", i, err, dump.Pretty(alpha))
		}
		if !equality.Semantic.DeepEqual(in, back) {
			t.Fatalf("round %d: v1 -> v1alpha1 -> v1 changed the object:\n%s", i, diff(in, back))
		}
	}
}

func diff(a, b any) string {
	return "before:\n" + dump.Pretty(a) + "\nafter:\n" + dump.Pretty(b)
}

func TestMachineOSBuildSurvivesBothRoundTrips(t *testing.T) {
	f := filler(3)
	for i := 0; i < fuzzRounds; i++ {
		alpha := &mosbv1.MachineOSBuild{}
		f.Fill(alpha)
		alpha.TypeMeta = metav1.TypeMeta{APIVersion: mosbv1.GroupVersion.String(), Kind: "MachineOSBuild"}
		v1, err := convert.MachineOSBuildToV1(alpha.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		back, err := convert.MachineOSBuildFromV1(v1)
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(alpha, back) {
			t.Fatalf("round %d: v1alpha1 -> v1 -> v1alpha1 changed the object:\n%s", i, diff(alpha, back))
		}

		in := &mcfgv1.MachineOSBuild{}
		f.Fill(in)
		in.TypeMeta = metav1.TypeMeta{APIVersion: mcfgv1.GroupVersion.String(), Kind: "MachineOSBuild"}
		a, err := convert.MachineOSBuildFromV1(in.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		again, err := convert.MachineOSBuildToV1(a)
		if err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(in, again) {
			t.Fatalf("round %d: v1 -> v1alpha1 -> v1 changed the object:\n%s", i, diff(in, again))
		}
	}
}
