/* placeholder: skipped */
int main(void)
{
	return 77;
}
